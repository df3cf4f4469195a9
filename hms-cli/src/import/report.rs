//! What happened to every row: the report CSV (`file, line, id, outcome, reason`, per-file
//! totals at its end) and the summary on screen.

use crate::output::{keep, Format, Printer, View};
use crate::Failure;
use std::path::Path;

/// The outcome of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    /// Imported, with something a data steward should know (the reason says what).
    Warning,
    /// The same record is already in HMS (a re-run).
    AlreadyPresent,
    /// A different record holds its id: to resolve by hand.
    Conflict,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::Warning => "warning",
            Outcome::AlreadyPresent => "already_present",
            Outcome::Conflict => "conflict",
            Outcome::Rejected => "rejected",
        }
    }

    /// Whether the record is in HMS after the row (so rows referring to it are valid).
    pub fn is_in(self) -> bool {
        matches!(
            self,
            Outcome::Imported | Outcome::Warning | Outcome::AlreadyPresent
        )
    }
}

#[derive(Debug, Clone)]
pub struct RowResult {
    pub file: &'static str,
    /// Physical line; 0 for a problem of the whole file.
    pub line: usize,
    pub id: String,
    pub outcome: Outcome,
    pub reason: String,
}

/// Per-file totals.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Totals {
    pub file: String,
    pub read: usize,
    pub imported: usize,
    pub warning: usize,
    pub already_present: usize,
    pub conflict: usize,
    pub rejected: usize,
}

/// The summary's columns (CSV keeps the field names).
const TOTALS: View<Totals> = View {
    id: |t| (&t.file).into(),
    cols: &[
        keep("File", "file", |t| (&t.file).into()),
        keep("Read", "read", |t| t.read.into()),
        keep("Imported", "imported", |t| t.imported.into()),
        keep("Warned", "warning", |t| t.warning.into()),
        keep("Present", "already_present", |t| t.already_present.into()),
        keep("Conflict", "conflict", |t| t.conflict.into()),
        keep("Rejected", "rejected", |t| t.rejected.into()),
    ],
};

impl Totals {
    fn words(&self) -> String {
        format!(
            "read {}: imported {}, warning {}, already present {}, conflict {}, rejected {}",
            self.read,
            self.imported,
            self.warning,
            self.already_present,
            self.conflict,
            self.rejected
        )
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<RowResult>,
}

impl Report {
    pub fn record(
        &mut self,
        file: &'static str,
        line: usize,
        id: &str,
        outcome: Outcome,
        reason: impl Into<String>,
    ) {
        self.rows.push(RowResult {
            file,
            line,
            id: id.to_string(),
            outcome,
            reason: reason.into(),
        });
    }

    /// Totals per file, in `files` order.
    pub fn totals(&self, files: &[&'static str]) -> Vec<Totals> {
        files
            .iter()
            .map(|f| {
                let mut t = Totals {
                    file: f.to_string(),
                    ..Totals::default()
                };
                for r in self.rows.iter().filter(|r| r.file == *f && r.line > 0) {
                    t.read += 1;
                    match r.outcome {
                        Outcome::Imported => t.imported += 1,
                        Outcome::Warning => t.warning += 1,
                        Outcome::AlreadyPresent => t.already_present += 1,
                        Outcome::Conflict => t.conflict += 1,
                        Outcome::Rejected => t.rejected += 1,
                    }
                }
                t
            })
            .collect()
    }

    /// Whether anything was rejected or conflicts (the import is then partial).
    pub fn partial(&self) -> bool {
        self.rows
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Rejected | Outcome::Conflict))
    }

    /// Writes the report: every row in file order, then one `total` row per file.
    pub fn write(&self, path: &Path, files: &[&'static str]) -> Result<(), Failure> {
        let fail = |e: &dyn std::fmt::Display| {
            Failure::usage(format!("cannot write {}: {e}", path.display()))
        };
        let mut w = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
        w.write_record(["file", "line", "id", "outcome", "reason"])
            .map_err(|e| fail(&e))?;
        for f in files {
            for r in self.rows.iter().filter(|r| r.file == *f) {
                let line = if r.line == 0 {
                    String::new()
                } else {
                    r.line.to_string()
                };
                w.write_record([r.file, &line, &r.id, r.outcome.as_str(), &r.reason])
                    .map_err(|e| fail(&e))?;
            }
        }
        for t in self.totals(files) {
            w.write_record([t.file.as_str(), "", "", "total", &t.words()])
                .map_err(|e| fail(&e))?;
        }
        w.flush().map_err(|e| fail(&e))?;
        Ok(())
    }

    /// The summary: a table of totals per file (narrow enough for 80 columns), and the
    /// problems of whole files.
    pub fn print(&self, out: &Printer, files: &[&'static str]) {
        let mut rows = self.totals(files);
        if out.format == Format::Table {
            // `hms_prescriptions`: the table then fits 80 columns.
            for t in &mut rows {
                t.file = t.file.trim_end_matches(".csv").to_string();
            }
        }
        out.list(&rows, &TOTALS);
        for r in self.rows.iter().filter(|r| r.line == 0) {
            eprintln!("{}: {}", r.file, r.reason);
        }
    }
}

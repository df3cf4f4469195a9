//! Output: tables for people (sized to the terminal), `json` (the API's own model) and `csv`
//! for scripts, ids only with `--quiet`. Times in local time (or `--tz`), money with currency.

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};

/// Writes one line to stdout; a reader that went away (`hmsctl … | head`) ends the program
/// quietly instead of a panic.
macro_rules! emit {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}
pub(crate) use emit;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// How a column's value is shown in a table.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Text,
    Time,
    Money,
}

/// A column: header, field of the API model, kind.
pub type Col = (&'static str, &'static str, Kind);

/// How to print.
#[derive(Clone, Debug)]
pub struct Printer {
    pub format: Format,
    pub quiet: bool,
    pub tz: Option<chrono_tz::Tz>,
    pub currency: String,
}

impl Printer {
    fn time(&self, v: &Value) -> String {
        let Some(s) = v.as_str() else { return text(v) };
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) else {
            return s.to_string();
        };
        match self.tz {
            Some(tz) => t
                .with_timezone(&tz)
                .format("%a %d %b %Y %H:%M %Z")
                .to_string(),
            None => t
                .with_timezone(&chrono::Local)
                .format("%a %d %b %Y %H:%M")
                .to_string(),
        }
    }

    fn money(&self, v: &Value) -> String {
        match v.as_str() {
            Some(m) => self.with_currency(m),
            None => text(v),
        }
    }

    /// An amount with the currency shown (`₹525.00`, `USD 525.00`).
    pub fn amount(&self, m: hms_client::Money) -> String {
        self.with_currency(&m.to_string())
    }

    fn with_currency(&self, m: &str) -> String {
        match self.currency.as_str() {
            "INR" => format!("₹{m}"),
            c => format!("{c} {m}"),
        }
    }

    fn cell(&self, row: &Value, col: &Col) -> String {
        let v = &row[col.1];
        match col.2 {
            Kind::Text => text(v),
            Kind::Time => self.time(v),
            Kind::Money => self.money(v),
        }
    }

    /// Prints rows (API objects) with `cols`; `id` names the field `--quiet` prints.
    pub fn list(&self, rows: &[Value], cols: &[Col], id: &str) {
        if self.quiet {
            for r in rows {
                emit!("{}", text(&r[id]));
            }
            return;
        }
        match self.format {
            Format::Json => emit!("{}", serde_json::to_string_pretty(rows).unwrap_or_default()),
            Format::Csv => {
                emit!("{}", cols.iter().map(|c| c.1).collect::<Vec<_>>().join(","));
                for r in rows {
                    let line: Vec<String> =
                        cols.iter().map(|c| csv_field(&text(&r[c.1]))).collect();
                    emit!("{}", line.join(","));
                }
            }
            Format::Table => {
                let mut t = table();
                t.set_header(cols.iter().map(|c| c.0));
                for r in rows {
                    t.add_row(cols.iter().map(|c| self.cell(r, c)));
                }
                emit!("{t}");
                if rows.is_empty() {
                    emit!("(none)");
                }
            }
        }
    }

    /// Prints one record: JSON as is, else a two-column table of `cols`.
    pub fn record(&self, row: &Value, cols: &[Col], id: &str) {
        if self.quiet {
            emit!("{}", text(&row[id]));
            return;
        }
        match self.format {
            Format::Json => emit!("{}", serde_json::to_string_pretty(row).unwrap_or_default()),
            Format::Csv => self.list(std::slice::from_ref(row), cols, id),
            Format::Table => {
                let mut t = table();
                for c in cols {
                    t.add_row(vec![c.0.to_string(), self.cell(row, c)]);
                }
                emit!("{t}");
            }
        }
    }
}

/// A table: box-drawn and fitted to the terminal at one; into a pipe or a file, plain
/// aligned columns (no box drawing, no wrapping) that `grep`, `cut` and `awk` read.
fn table() -> Table {
    use std::io::IsTerminal;
    let mut t = Table::new();
    if std::io::stdout().is_terminal() {
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        t.load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
    }
    t
}

/// A JSON value as plain text (strings unquoted, null empty).
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "yes".into()
            } else {
                "no".into()
            }
        }
        other => other.to_string(),
    }
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

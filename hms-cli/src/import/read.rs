//! Reading a legacy CSV: one record per physical line, numbered as an editor numbers it, so a
//! report's line points at the row. A blank line is skipped without shifting the numbers; a
//! malformed line (an unclosed quote, the wrong number of fields) is a problem of that line
//! alone, never a reason to swallow the lines after it.

use std::collections::HashMap;
use std::path::Path;

/// One data line of a file.
#[derive(Debug, Clone)]
pub struct Line {
    /// Physical line number, 1-based.
    pub number: usize,
    /// The fields by column name (lower case), trimmed; empty when the line is malformed.
    pub fields: HashMap<String, String>,
    /// Why the line could not be read as a row, if it could not.
    pub malformed: Option<String>,
    /// The line's first field as written (its id), even when the line is malformed.
    pub lead: String,
}

impl Line {
    /// The value of `column`, or "" when the file has no such column.
    pub fn get(&self, column: &str) -> &str {
        self.fields.get(column).map(String::as_str).unwrap_or("")
    }

    /// The row's id as written: its id column, or for a malformed line its first field.
    pub fn id(&self, column: &str) -> String {
        self.fields
            .get(column)
            .cloned()
            .unwrap_or_else(|| self.lead.clone())
    }
}

/// A file's lines after its header.
#[derive(Debug, Clone)]
pub struct Sheet {
    pub lines: Vec<Line>,
}

/// Reads `dir/name`; `Err` says why the file as a whole cannot be read.
pub fn sheet(dir: &Path, name: &str, required: &[&str]) -> Result<Sheet, String> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} is missing", path.display()),
        _ => format!("{} cannot be read: {e}", path.display()),
    })?;
    parse(&String::from_utf8_lossy(&bytes), required)
}

/// Parses a whole file's text (see the module's rules).
pub fn parse(text: &str, required: &[&str]) -> Result<Sheet, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut numbered = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = numbered.next() else {
        return Err("the file is empty (no header line)".into());
    };
    let columns: Vec<String> = fields(header)
        .map_err(|why| format!("the header line {why}"))?
        .into_iter()
        .map(|c| c.to_lowercase())
        .collect();
    let missing: Vec<&str> = required
        .iter()
        .filter(|r| !columns.iter().any(|c| c == *r))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the header has no column {} (it has {})",
            missing.join(", "),
            columns.join(", ")
        ));
    }
    let lines = numbered
        .map(|(number, raw)| {
            let lead = raw
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_string();
            match fields(raw) {
                Err(why) => Line {
                    number,
                    fields: HashMap::new(),
                    malformed: Some(format!("the line {why}; it was not read")),
                    lead,
                },
                Ok(values) if values.len() != columns.len() => Line {
                    number,
                    fields: HashMap::new(),
                    malformed: Some(format!(
                        "the line has {} fields, the header {}; it was not read",
                        values.len(),
                        columns.len()
                    )),
                    lead,
                },
                Ok(values) => Line {
                    number,
                    fields: columns.iter().cloned().zip(values).collect(),
                    malformed: None,
                    lead,
                },
            }
        })
        .collect();
    Ok(Sheet { lines })
}

/// The fields of one line, trimmed.
fn fields(line: &str) -> Result<Vec<String>, String> {
    if line.matches('"').count() % 2 == 1 {
        return Err("has a quote that is never closed".into());
    }
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    match r.records().next() {
        Some(Ok(rec)) => Ok(rec.iter().map(|f| f.trim().to_string()).collect()),
        Some(Err(e)) => Err(format!("is not CSV ({e})")),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_physical_numbers_and_bad_ones_stand_alone() {
        let text = "id,name\n1,Asha\n\n2,\"Ravi\n3,Meera,extra\n4,\"Kumar, Jr\"\n";
        let s = parse(text, &["id", "name"]).unwrap();
        let numbers: Vec<usize> = s.lines.iter().map(|l| l.number).collect();
        assert_eq!(numbers, vec![2, 4, 5, 6]);
        assert!(s.lines[1].malformed.as_deref().unwrap().contains("quote"));
        assert!(s.lines[2]
            .malformed
            .as_deref()
            .unwrap()
            .contains("3 fields"));
        assert_eq!(
            s.lines[3].get("name"),
            "Kumar, Jr",
            "quoted commas are one field"
        );
        assert_eq!(s.lines[0].get("name"), "Asha");
        assert_eq!(
            (s.lines[1].lead.as_str(), s.lines[2].lead.as_str()),
            ("2", "3"),
            "a bad line keeps its id"
        );
    }

    #[test]
    fn a_missing_column_is_said_with_what_there_is() {
        let err = parse("id,nom\n1,x\n", &["id", "name"]).unwrap_err();
        assert!(
            err.contains("no column name") && err.contains("id, nom"),
            "{err}"
        );
        assert!(parse("", &["id"]).is_err());
    }
}

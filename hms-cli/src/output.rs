//! Output: tables for people (fitted to the terminal), `json` (the API's own model) and `csv`
//! for scripts, ids only with `--quiet`. Times in the clinic's zone (or `--tz`), labelled;
//! money with its currency.
//!
//! A table is a [`View`] of a typed model: each [`Column`] reads its cell from the model with a
//! function, so a renamed field is a compile error, never a blank column.

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use hms_client::Money;
use serde::Serialize;
use std::io::IsTerminal;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// One value of a table: shown for people in a table, written plainly in CSV.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Time(DateTime<Utc>),
    Money(Money),
    Flag(bool),
    Empty,
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}
impl From<&String> for Cell {
    fn from(s: &String) -> Self {
        Cell::Text(s.clone())
    }
}
impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}
impl From<i64> for Cell {
    fn from(n: i64) -> Self {
        Cell::Text(n.to_string())
    }
}
impl From<usize> for Cell {
    fn from(n: usize) -> Self {
        Cell::Text(n.to_string())
    }
}
impl From<DateTime<Utc>> for Cell {
    fn from(t: DateTime<Utc>) -> Self {
        Cell::Time(t)
    }
}
impl From<Money> for Cell {
    fn from(m: Money) -> Self {
        Cell::Money(m)
    }
}
impl From<bool> for Cell {
    fn from(b: bool) -> Self {
        Cell::Flag(b)
    }
}
impl<T: Clone + Into<Cell>> From<&Option<T>> for Cell {
    fn from(v: &Option<T>) -> Self {
        v.clone().map_or(Cell::Empty, Into::into)
    }
}

/// How a column gives way when a table is wider than the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Kept whole (ids, times, money, statuses).
    Keep,
    /// Long free text: cut with `…` to what fits.
    Shrink,
    /// Useful but not needed to act on a row: left out first.
    Drop,
}

/// A column: its header for people, its name in CSV (the API field), how it fits, its cell.
pub struct Column<T> {
    pub header: &'static str,
    pub key: &'static str,
    pub fit: Fit,
    pub cell: fn(&T) -> Cell,
}

/// How rows of a model are shown: its columns, and the id `--quiet` prints.
pub struct View<T: 'static> {
    pub cols: &'static [Column<T>],
    pub id: fn(&T) -> Cell,
}

/// A column kept whole.
pub const fn keep<T>(header: &'static str, key: &'static str, cell: fn(&T) -> Cell) -> Column<T> {
    Column {
        header,
        key,
        fit: Fit::Keep,
        cell,
    }
}

/// A column of long text, cut to fit.
pub const fn shrink<T>(header: &'static str, key: &'static str, cell: fn(&T) -> Cell) -> Column<T> {
    Column {
        header,
        key,
        fit: Fit::Shrink,
        cell,
    }
}

/// A column left out when the terminal is narrow.
pub const fn drop<T>(header: &'static str, key: &'static str, cell: fn(&T) -> Cell) -> Column<T> {
    Column {
        header,
        key,
        fit: Fit::Drop,
        cell,
    }
}

/// How to print.
#[derive(Clone, Debug)]
pub struct Printer {
    pub format: Format,
    pub quiet: bool,
    pub tz: Option<chrono_tz::Tz>,
    pub currency: String,
}

impl Printer {
    /// Whether this output is read by a person (a table), not a script (JSON, CSV, ids): only
    /// then are names looked up, totals added and hints given.
    pub fn for_people(&self) -> bool {
        self.format == Format::Table && !self.quiet
    }

    /// A time for people: in the clinic's zone (or `--tz`), labelled with it.
    pub fn time(&self, t: DateTime<Utc>) -> String {
        match self.tz {
            Some(tz) => t
                .with_timezone(&tz)
                .format("%a %d %b %Y %H:%M %Z")
                .to_string(),
            None => t.format("%a %d %b %Y %H:%M UTC").to_string(),
        }
    }

    /// An amount with the currency shown (`₹525.00`, `USD 525.00`).
    pub fn amount(&self, m: Money) -> String {
        match self.currency.as_str() {
            "INR" => format!("₹{m}"),
            c => format!("{c} {m}"),
        }
    }

    fn shown(&self, c: Cell) -> String {
        match c {
            Cell::Text(s) => s,
            Cell::Time(t) => self.time(t),
            Cell::Money(m) => self.amount(m),
            Cell::Flag(b) => yes_no(b).into(),
            Cell::Empty => String::new(),
        }
    }

    /// Prints rows with `view`: a table, JSON (the models as the API gives them), CSV, or ids.
    pub fn list<T: Serialize>(&self, rows: &[T], view: &View<T>) {
        if self.quiet {
            for r in rows {
                emit!("{}", plain((view.id)(r)));
            }
            return;
        }
        match self.format {
            Format::Json => emit!("{}", serde_json::to_string_pretty(rows).unwrap_or_default()),
            Format::Csv => {
                emit!("{}", csv_line(view.cols.iter().map(|c| c.key.to_string())));
                for r in rows {
                    emit!("{}", csv_row(r, view));
                }
            }
            Format::Table => {
                let header: Vec<String> = view.cols.iter().map(|c| c.header.to_string()).collect();
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| view.cols.iter().map(|c| self.shown((c.cell)(r))).collect())
                    .collect();
                let fits: Vec<Fit> = view.cols.iter().map(|c| c.fit).collect();
                emit!("{}", table(header, cells, &fits));
                if rows.is_empty() && std::io::stdout().is_terminal() {
                    emit!("(none)");
                }
            }
        }
    }

    /// Prints one record: JSON as is, one CSV row, or a two-column table of the view.
    pub fn record<T: Serialize>(&self, row: &T, view: &View<T>) {
        if self.quiet {
            emit!("{}", plain((view.id)(row)));
            return;
        }
        match self.format {
            Format::Json => emit!("{}", serde_json::to_string_pretty(row).unwrap_or_default()),
            Format::Csv => self.list(std::slice::from_ref(row), view),
            Format::Table => {
                let cells = view
                    .cols
                    .iter()
                    .map(|c| vec![c.header.to_string(), self.shown((c.cell)(row))])
                    .collect();
                emit!("{}", table(Vec::new(), cells, &[Fit::Keep, Fit::Shrink]));
            }
        }
    }
}

/// One CSV line of a row (the header is written once, before the rows).
pub fn csv_row<T>(row: &T, view: &View<T>) -> String {
    csv_line(view.cols.iter().map(|c| plain((c.cell)(row))))
}

/// A cell as a script reads it: times in RFC 3339 UTC and amounts without currency, as in JSON.
pub fn plain(c: Cell) -> String {
    match c {
        Cell::Text(s) => s,
        Cell::Time(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        Cell::Money(m) => m.to_string(),
        Cell::Flag(b) => yes_no(b).into(),
        Cell::Empty => String::new(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn csv_line(fields: impl Iterator<Item = String>) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let fields: Vec<String> = fields.collect();
    // Writing to memory cannot fail.
    let _ = w.write_record(&fields);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string()
}

/// The width tables are fitted to: `COLUMNS` when set (as shells export it), else the
/// terminal's; none into a pipe or a file.
fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
    {
        return Some(n);
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, cols)| cols as usize)
}

/// A box-drawn table at a terminal, fitted to its width (long text cut with `…`, optional
/// columns left out — never a wrapped cell); into a pipe or a file, plain aligned columns
/// (no box drawing) that `grep`, `cut` and `awk` read.
fn table(header: Vec<String>, rows: Vec<Vec<String>>, fits: &[Fit]) -> Table {
    let mut t = Table::new();
    t.set_content_arrangement(ContentArrangement::Disabled);
    let Some(width) = terminal_width() else {
        t.load_preset(comfy_table::presets::NOTHING);
        if !header.is_empty() {
            t.set_header(header);
        }
        for r in rows {
            t.add_row(r);
        }
        return t;
    };
    t.load_preset(UTF8_FULL_CONDENSED);
    let natural: Vec<usize> = (0..fits.len())
        .map(|i| {
            header
                .get(i)
                .into_iter()
                .chain(rows.iter().filter_map(|r| r.get(i)))
                .map(|s| console::measure_text_width(s))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let widths = fit(&natural, fits, width);
    let cut = |cells: Vec<String>| -> Vec<String> {
        cells
            .into_iter()
            .zip(&widths)
            .filter_map(|(s, w)| w.map(|w| cut_to(s, w)))
            .collect()
    };
    if !header.is_empty() {
        t.set_header(cut(header));
    }
    for r in rows {
        t.add_row(cut(r));
    }
    t
}

/// `s` in at most `w` columns: whole when it fits, else cut with `…`.
fn cut_to(s: String, w: usize) -> String {
    if console::measure_text_width(&s) <= w {
        s
    } else if w == 0 {
        String::new()
    } else {
        console::truncate_str(&s, w, "…").into_owned()
    }
}

/// Room a box-drawn table takes beyond its cells: a border and a space either side of each.
fn frame(columns: usize) -> usize {
    3 * columns + 1
}

/// The narrowest a cut column gets.
const MIN_SHRUNK: usize = 8;

/// Each column's width in a table `total` wide (None: left out). Long text gives way first,
/// down to [`MIN_SHRUNK`]; then optional columns are left out, right to left; then any but
/// the first, right to left.
pub fn fit(natural: &[usize], fits: &[Fit], total: usize) -> Vec<Option<usize>> {
    let mut shown: Vec<bool> = vec![true; natural.len()];
    loop {
        let kept: Vec<usize> = (0..natural.len()).filter(|&i| shown[i]).collect();
        let room = total.saturating_sub(frame(kept.len()));
        let fixed: usize = kept
            .iter()
            .filter(|&&i| fits[i] != Fit::Shrink)
            .map(|&i| natural[i])
            .sum();
        let shrinking: Vec<usize> = kept
            .iter()
            .copied()
            .filter(|&i| fits[i] == Fit::Shrink)
            .collect();
        let least: usize = shrinking.iter().map(|&i| natural[i].min(MIN_SHRUNK)).sum();
        if fixed + least <= room || kept.len() <= 1 {
            let mut widths: Vec<Option<usize>> = (0..natural.len())
                .map(|i| shown[i].then_some(natural[i]))
                .collect();
            // Share what is left among the long-text columns, narrowest first, so a short one
            // keeps all it needs and the long ones split the rest.
            let mut left = room.saturating_sub(fixed);
            let mut order = shrinking.clone();
            order.sort_by_key(|&i| natural[i]);
            for (n, &i) in order.iter().enumerate() {
                let share = left / (order.len() - n);
                let w = natural[i].min(share.max(natural[i].min(MIN_SHRUNK)));
                widths[i] = Some(w);
                left = left.saturating_sub(w);
            }
            return widths;
        }
        let victim = kept
            .iter()
            .rev()
            .find(|&&i| fits[i] == Fit::Drop)
            .or_else(|| kept.iter().skip(1).rev().find(|&&i| fits[i] == Fit::Shrink))
            .or_else(|| kept.iter().skip(1).next_back())
            .copied();
        match victim {
            Some(i) => shown[i] = false,
            None => return natural.iter().map(|&w| Some(w)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_fits_by_cutting_long_text_then_leaving_out_optional_columns() {
        use Fit::*;
        let natural = [3, 20, 40, 10];
        let fits = [Keep, Keep, Shrink, Drop];
        // Wide enough: nothing changes.
        assert_eq!(
            fit(&natural, &fits, 200),
            vec![Some(3), Some(20), Some(40), Some(10)]
        );
        // 80 columns: the frame takes 13, the kept columns 33; the text gets the other 34.
        assert_eq!(
            fit(&natural, &fits, 80),
            vec![Some(3), Some(20), Some(34), Some(10)]
        );
        // Narrower than the text's least: the optional column goes first.
        let w = fit(&natural, &fits, 40);
        assert_eq!(w[3], None);
        assert_eq!(w[0], Some(3));
        let used: usize = w.iter().flatten().sum::<usize>() + frame(w.iter().flatten().count());
        assert!(used <= 40, "{w:?}");
    }

    #[test]
    fn text_is_cut_only_when_it_does_not_fit() {
        assert_eq!(cut_to("ID".into(), 2), "ID");
        assert_eq!(cut_to("Message".into(), 4), "Mes…");
        assert_eq!(cut_to("₹500.00".into(), 7), "₹500.00");
        assert_eq!(cut_to("x".into(), 0), "");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(
            csv_line(["a".to_string(), "b,c".into(), "say \"hi\"".into()].into_iter()),
            "a,\"b,c\",\"say \"\"hi\"\"\""
        );
    }
}

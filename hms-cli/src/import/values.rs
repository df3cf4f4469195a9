//! Reading legacy values as leniently as their meaning allows: ids, amounts with thousands
//! separators, dates, date-times in any unambiguous common form (local ones in the clinic's
//! zone), statuses in any case. Each reader answers the value, or a reason that names the
//! column and quotes the value; where it had to change the value to read it, a warning.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use hms_client::Money;

/// A value read, with a warning when reading it changed it.
pub type Read<T> = Result<(T, Option<String>), String>;

/// A positive whole number.
pub fn id(column: &str, v: &str) -> Result<i64, String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ if v.trim().is_empty() => Err(format!("{column} is empty")),
        _ => Err(format!("{column} '{v}' is not a positive whole number")),
    }
}

/// A whole number of days, 1 or more.
pub fn days(column: &str, v: &str) -> Result<i64, String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{column} '{v}' is not a number of days (1 or more)"
        )),
    }
}

/// An amount: `1200`, `1200.5`, `1,200.00`, `₹1,200`. Separators and a currency sign are
/// dropped with a warning; a negative or unreadable amount is a reason.
pub fn amount(column: &str, v: &str) -> Read<Money> {
    let t = v.trim();
    let cleaned: String = t
        .trim_start_matches('₹')
        .trim_start_matches("Rs.")
        .trim_start_matches("Rs")
        .trim_start_matches("INR")
        .trim()
        .chars()
        .filter(|c| *c != ',' && *c != '_')
        .collect();
    let m: Money = cleaned
        .parse()
        .map_err(|_| format!("{column} '{v}' is not an amount (e.g. 1200.00)"))?;
    if m < Money::ZERO {
        return Err(format!("{column} '{v}' is negative"));
    }
    if m > Money::MAX {
        return Err(format!("{column} '{v}' is more than {}", Money::MAX));
    }
    let warning = (cleaned != t).then(|| format!("{column} '{v}' read as {m}"));
    Ok((m, warning))
}

/// A calendar date, `YYYY-MM-DD` (or with `/`).
pub fn date(column: &str, v: &str) -> Result<NaiveDate, String> {
    let t = v.trim();
    ["%Y-%m-%d", "%Y/%m/%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(t, f).ok())
        .ok_or_else(|| {
            if t.is_empty() {
                format!("{column} is empty")
            } else {
                format!("{column} '{v}' is not a date (YYYY-MM-DD)")
            }
        })
}

/// A date-time: with `Z` or an offset it is read as written; without, it is clinic-local time
/// in `tz` (as the old system wrote it). `T` or a space between date and time, seconds and
/// fractions optional; a bare date is midnight, with a warning.
pub fn instant(column: &str, v: &str, tz: Tz) -> Read<DateTime<Utc>> {
    let t = v.trim();
    if t.is_empty() {
        return Err(format!("{column} is empty"));
    }
    let unreadable = || format!("{column} '{v}' is not a date-time (YYYY-MM-DD HH:MM[:SS])");
    let iso = t.replacen(' ', "T", 1);
    let with_offset = if iso.ends_with('Z') || iso.ends_with('z') {
        format!("{}+00:00", &iso[..iso.len() - 1])
    } else {
        iso.clone()
    };
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%dT%H:%M%z",
    ] {
        if let Ok(at) = DateTime::parse_from_str(&with_offset, f) {
            return Ok((at.with_timezone(&Utc), None));
        }
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&iso, f).ok());
    let (naive, warning) = match naive {
        Some(n) => (n, None),
        None => {
            let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| unreadable())?;
            (
                d.and_hms_opt(0, 0, 0).expect("midnight exists"),
                Some(format!("{column} '{v}' has no time; read as 00:00")),
            )
        }
    };
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(at) => Ok((at.with_timezone(&Utc), warning)),
        chrono::LocalResult::Ambiguous(first, _) => Ok((
            first.with_timezone(&Utc),
            Some(format!(
                "{column} '{v}' happens twice in {tz} (clocks went back); read as the first"
            )),
        )),
        chrono::LocalResult::None => Err(format!(
            "{column} '{v}' does not exist in {tz} (clocks went forward)"
        )),
    }
}

/// One of `allowed` (upper case), read in any case with spaces or hyphens for underscores;
/// `aliases` are other spellings of the same status (`CANCELED`), read with a warning.
pub fn status(
    column: &str,
    v: &str,
    allowed: &[&'static str],
    aliases: &[(&str, &'static str)],
) -> Read<&'static str> {
    let key: String = v
        .trim()
        .to_uppercase()
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect();
    if let Some(s) = allowed.iter().find(|a| **a == key) {
        let warning = (v.trim() != *s).then(|| format!("{column} '{v}' read as {s}"));
        return Ok((s, warning));
    }
    if let Some((_, s)) = aliases.iter().find(|(alias, _)| *alias == key) {
        return Ok((s, Some(format!("{column} '{v}' read as {s}"))));
    }
    Err(format!(
        "{column} '{v}' is not one of {}",
        allowed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IST: Tz = chrono_tz::Asia::Kolkata;

    #[test]
    fn amounts_with_separators_are_read_and_said() {
        assert_eq!(amount("amount", "617").unwrap(), (Money(61_700), None));
        let (m, w) = amount("amount", "1,200").unwrap();
        assert_eq!(m, Money(120_000));
        assert!(w.unwrap().contains("'1,200' read as 1200.00"));
        assert_eq!(amount("amount", "₹1,200.50").unwrap().0, Money(120_050));
        assert!(amount("amount", "twelve").unwrap_err().contains("'twelve'"));
        assert!(amount("amount", "-5").unwrap_err().contains("negative"));
    }

    #[test]
    fn local_times_are_clinic_time_and_offsets_are_kept() {
        let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            instant("t", "2024-05-01 09:30:00", IST).unwrap().0,
            utc("2024-05-01T04:00:00Z")
        );
        assert_eq!(
            instant("t", "2024-05-01 09:30", IST).unwrap().0,
            utc("2024-05-01T04:00:00Z")
        );
        assert_eq!(
            instant("t", "2024-05-01T08:30:00Z", IST).unwrap().0,
            utc("2024-05-01T08:30:00Z")
        );
        assert_eq!(
            instant("t", "2024-05-01T08:30Z", IST).unwrap().0,
            utc("2024-05-01T08:30:00Z")
        );
        assert_eq!(
            instant("t", "2024-05-01T14:00:00+05:30", IST).unwrap().0,
            utc("2024-05-01T08:30:00Z")
        );
        assert_eq!(
            instant("t", "2024-05-01 14:00:00+0530", IST).unwrap().0,
            utc("2024-05-01T08:30:00Z")
        );
        assert!(instant("t", "2024-05-01", IST).unwrap().1.is_some());
        let e = instant("slot_start", "01/05/2024 9:30", IST).unwrap_err();
        assert!(e.contains("slot_start '01/05/2024 9:30'"), "{e}");
        let ny: Tz = "America/New_York".parse().unwrap();
        assert!(
            instant("t", "2024-03-10 02:30", ny).is_err(),
            "a time that never happened"
        );
    }

    #[test]
    fn dates_and_statuses() {
        assert!(date("dob", "2023-02-30")
            .unwrap_err()
            .contains("dob '2023-02-30' is not a date"));
        let st = ["SCHEDULED", "COMPLETED", "CANCELLED", "NO_SHOW"];
        assert_eq!(
            status("status", "COMPLETED", &st, &[]).unwrap(),
            ("COMPLETED", None)
        );
        let (s, w) = status("status", "completed", &st, &[]).unwrap();
        assert_eq!(
            (s, w.unwrap()),
            (
                "COMPLETED",
                "status 'completed' read as COMPLETED".to_string()
            )
        );
        assert_eq!(status("status", "No-Show", &st, &[]).unwrap().0, "NO_SHOW");
        let (s, w) = status("status", "canceled", &st, &[("CANCELED", "CANCELLED")]).unwrap();
        assert_eq!((s, w.is_some()), ("CANCELLED", true));
        assert!(status("status", "DONE", &st, &[])
            .unwrap_err()
            .contains("'DONE'"));
    }
}

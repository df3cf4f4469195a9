//! One canonical text form for instants and dates in both databases.
//!
//! Timestamps are stored as fixed-width RFC 3339 UTC text with microseconds
//! (`2026-12-01T09:30:00.000000Z`), so comparisons, indexes and triggers order them correctly
//! as text on SQLite and on PostgreSQL alike. Dates are `YYYY-MM-DD`.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// An instant as stored.
pub fn to_db(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An instant from storage; a malformed value is a bug in what wrote it.
pub fn from_db(s: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::Decode(format!("stored timestamp {s:?}: {e}").into()))
}

/// A date as stored.
pub fn date_to_db(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A date from storage.
pub fn date_from_db(s: &str) -> Result<NaiveDate, sqlx::Error> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| sqlx::Error::Decode(format!("stored date {s:?}: {e}").into()))
}

static CLINIC_ZONE: std::sync::RwLock<Option<chrono_tz::Tz>> = std::sync::RwLock::new(None);

/// The clinic's zone, for the times that messages state (set when a service starts).
pub fn set_clinic_zone(tz: chrono_tz::Tz) {
    *CLINIC_ZONE.write().unwrap_or_else(|e| e.into_inner()) = Some(tz);
}

/// An instant as people at the clinic read it: `2026-11-27 10:00 IST` (in its zone, labelled).
pub fn clinic(t: DateTime<Utc>) -> String {
    let tz = CLINIC_ZONE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(chrono_tz::Asia::Kolkata);
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_order_is_time_order() {
        let a = "2026-01-01T09:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let b = a + chrono::Duration::microseconds(1);
        let c = a + chrono::Duration::days(400);
        assert!(to_db(a) < to_db(b) && to_db(b) < to_db(c));
        assert_eq!(from_db(&to_db(b)).unwrap(), b);
        assert_eq!(to_db(a).len(), to_db(c).len());
    }

    #[test]
    fn messages_state_clinic_time() {
        let t = "2026-11-27T04:30:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(clinic(t), "2026-11-27 10:00 IST");
    }
}

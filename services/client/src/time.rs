//! Instants on the wire: RFC 3339 out; in, RFC 3339 or a bare date-time read as UTC.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses `2026-12-01T09:30:00Z`, `2026-12-01T15:00:00+05:30`, or (as UTC)
/// `2026-12-01T09:30:00` / `2026-12-01 09:30:00`.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "'{s}' is not a date-time (use RFC 3339, e.g. 2026-12-01T09:30:00Z)"
    ))
}

/// `#[serde(with = "flexible")]` for a required instant.
pub mod flexible {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_instant(&s).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "flexible_option")]` for an optional instant.
pub mod flexible_option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::flexible::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            // Absent or null is no time; an empty string is a time that was not given well.
            None => Ok(None),
            Some(s) => super::parse_instant(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_instant;

    #[test]
    fn offsets_are_honoured_and_bare_times_are_utc() {
        let utc = parse_instant("2026-12-01T09:30:00Z").unwrap();
        assert_eq!(parse_instant("2026-12-01T15:00:00+05:30").unwrap(), utc);
        assert_eq!(parse_instant("2026-12-01T09:30:00").unwrap(), utc);
        assert_eq!(parse_instant("2026-12-01 09:30:00").unwrap(), utc);
        assert!(parse_instant("01/12/2026").is_err());
    }
}

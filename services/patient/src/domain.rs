//! Patient rules, free of I/O: what a valid registration and a valid change are.

use chrono::{DateTime, NaiveDate, Utc};
use hms_client::models::{NewPatient, PatientQuery, PatientUpdate};
use hms_kit::pii::{Email, PersonName, Phone};
use hms_kit::Error;

/// A registration that passed every rule.
#[derive(Debug, Clone)]
pub struct ValidPatient {
    pub patient_id: Option<i64>,
    pub name: PersonName,
    pub email: Option<Email>,
    pub phone: Phone,
    pub dob: NaiveDate,
    pub created_at: Option<DateTime<Utc>>,
}

/// A change that passed every rule; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ValidUpdate {
    pub name: Option<PersonName>,
    /// `Some(None)` clears the e-mail (sent as `""`).
    pub email: Option<Option<Email>>,
    pub phone: Option<Phone>,
    pub dob: Option<NaiveDate>,
}

impl ValidUpdate {
    /// Names of the fields this change touches (for the audit trail; never values).
    pub fn fields(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.name.is_some() {
            f.push("name");
        }
        if self.email.is_some() {
            f.push("email");
        }
        if self.phone.is_some() {
            f.push("phone");
        }
        if self.dob.is_some() {
            f.push("dob");
        }
        f
    }
}

const OLDEST_DOB: (i32, u32, u32) = (1900, 1, 1);

fn field(name: &'static str) -> impl Fn(String) -> Error {
    move |msg| Error::validation(name, format!("{name} {msg}"))
}

/// Date of birth: not in the future (clinic-local `today`) and not before 1900.
pub fn check_dob(dob: NaiveDate, today: NaiveDate) -> Result<NaiveDate, Error> {
    let oldest =
        NaiveDate::from_ymd_opt(OLDEST_DOB.0, OLDEST_DOB.1, OLDEST_DOB.2).expect("a valid date");
    if dob > today {
        // Well formed, and only wrong against today's date: a rule (422), not a form.
        return Err(
            Error::rule("dob_in_future", "dob must not be in the future")
                .with_details(serde_json::json!({ "field": "dob" })),
        );
    }
    if dob < oldest {
        return Err(Error::validation("dob", "dob must be 1900-01-01 or later"));
    }
    Ok(dob)
}

fn optional_email(raw: Option<String>) -> Result<Option<Email>, Error> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => Email::parse(s).map(Some).map_err(field("email")),
    }
}

impl ValidPatient {
    pub fn parse(new: NewPatient, today: NaiveDate) -> Result<Self, Error> {
        if let Some(id) = new.patient_id {
            hms_kit::import::legacy_id("patient_id", id)?;
        }
        Ok(ValidPatient {
            patient_id: new.patient_id,
            name: PersonName::parse(&new.name).map_err(field("name"))?,
            email: optional_email(new.email)?,
            phone: Phone::parse(&new.phone).map_err(field("phone"))?,
            dob: check_dob(new.dob, today)?,
            created_at: new.created_at,
        })
    }
}

impl ValidUpdate {
    pub fn parse(u: PatientUpdate, today: NaiveDate) -> Result<Self, Error> {
        let v = ValidUpdate {
            name: u
                .name
                .map(|n| PersonName::parse(&n).map_err(field("name")))
                .transpose()?,
            email: match u.email {
                None => None,
                Some(e) => Some(optional_email(Some(e))?),
            },
            phone: u
                .phone
                .map(|p| Phone::parse(&p).map_err(field("phone")))
                .transpose()?,
            dob: u.dob.map(|d| check_dob(d, today)).transpose()?,
        };
        if v.fields().is_empty() {
            // Well formed (each field may be null), but it asks for nothing: 422.
            return Err(Error::rule(
                "nothing_to_change",
                "nothing to change: give at least one of name, email, phone, dob",
            ));
        }
        Ok(v)
    }
}

/// Patients named at once in `GET /v1/patients?ids=` at most.
pub const MAX_IDS: usize = 100;

/// The patients a lookup names (`ids`: 1 to 100 positive integers, comma-separated, nothing
/// else, as its schema states), each once, in the order first named. The lookup stands alone
/// (one answer, no pages): with a search filter, a limit or a cursor beside it, which one the
/// caller meant is not known, so it is refused (422: each field is valid, the pair is not)
/// rather than one of them ignored.
pub fn lookup_ids(q: &PatientQuery) -> Result<Option<Vec<i64>>, Error> {
    let Some(list) = q.ids.as_deref() else {
        return Ok(None);
    };
    let malformed = || {
        Error::validation(
            "ids",
            format!(
                "ids must be 1 to {MAX_IDS} patient ids (positive integers) separated by commas"
            ),
        )
    };
    let mut ids: Vec<i64> = Vec::new();
    for (n, part) in list.split(',').enumerate() {
        let digits =
            part.len() <= 18 && part.bytes().all(|b| b.is_ascii_digit()) && !part.starts_with('0');
        let id = part
            .parse::<i64>()
            .ok()
            .filter(|_| digits && n < MAX_IDS)
            .ok_or_else(malformed)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let others = [
        ("name", q.name.is_some()),
        ("phone", q.phone.is_some()),
        ("email", q.email.is_some()),
        ("active", q.active.is_some()),
        ("limit", q.limit.is_some()),
        ("cursor", q.cursor.is_some()),
    ];
    if let Some((field, _)) = others.iter().find(|(_, given)| *given) {
        return Err(Error::rule(
            "lookup_stands_alone",
            format!("{field} cannot be combined with ids (a lookup by id stands alone)"),
        )
        .with_details(serde_json::json!({ "field": field })));
    }
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, email: Option<&str>, phone: &str, dob: &str) -> NewPatient {
        NewPatient {
            patient_id: None,
            name: name.into(),
            email: email.map(Into::into),
            phone: phone.into(),
            dob: dob.parse().unwrap(),
            created_at: None,
        }
    }

    fn today() -> NaiveDate {
        "2026-11-25".parse().unwrap()
    }

    fn field_of(e: Error) -> String {
        e.details.unwrap()["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = new("Asha Rao", Some("asha@x.in"), "9876543210", "1990-05-01");
        assert!(ValidPatient::parse(ok, today()).is_ok());
        let cases = [
            (new(" ", None, "9876543210", "1990-05-01"), "name"),
            (
                new("Asha", Some("nope"), "9876543210", "1990-05-01"),
                "email",
            ),
            (new("Asha", None, "12-34", "1990-05-01"), "phone"),
            (new("Asha", None, "9876543210", "2026-11-26"), "dob"),
            (new("Asha", None, "9876543210", "1899-12-31"), "dob"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                field_of(ValidPatient::parse(input, today()).unwrap_err()),
                expected
            );
        }
    }

    #[test]
    fn an_empty_update_is_refused_and_blank_email_clears() {
        assert!(ValidUpdate::parse(PatientUpdate::default(), today()).is_err());
        let u = ValidUpdate::parse(
            PatientUpdate {
                email: Some(String::new()),
                ..Default::default()
            },
            today(),
        )
        .unwrap();
        assert!(matches!(u.email, Some(None)));
        assert_eq!(u.fields(), vec!["email"]);
    }
}

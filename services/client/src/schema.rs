//! The published shape of request fields whose rule a plain type does not say: names, phone
//! numbers, free text, amounts within their bounds, codes read in any case. Each schema here
//! states exactly what the services accept (`hms_kit::pii`, `hms_kit::money`, the domain
//! modules), so a client generating requests from the OpenAPI documents sends what is taken,
//! and what is refused is outside the schema. Rules between fields (a shift's end after its
//! start, a leave at most a year long, a slot on :00 or :30) are business rules: 422.

use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};

fn string(nullable: bool) -> ObjectBuilder {
    let t = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(t)
}

/// A person's name: letters of any script with their marks, spaces and `. ' ’ -`, at least
/// one letter, at most 200 characters (`hms_kit::pii::PersonName`). The marks are listed by
/// range (combining diacriticals, Cyrillic, Devanagari, supplements, for symbols) rather than
/// as `\p{M}`: generators read `\p{M}` as whole blocks, unassigned code points included, and
/// the services refuse those.
const NAME: &str = r"^[\p{L}\u0300-\u036F\u0483-\u0489\u0900-\u0903\u093A-\u094F\u0951-\u0957\u0962-\u0963\u1DC0-\u1DFF\u20D0-\u20F0\s.'’-]*\p{L}[\p{L}\u0300-\u036F\u0483-\u0489\u0900-\u0903\u093A-\u094F\u0951-\u0957\u0962-\u0963\u1DC0-\u1DFF\u20D0-\u20F0\s.'’-]*$";

pub fn name() -> ObjectBuilder {
    name_of(false)
}

pub fn name_opt() -> ObjectBuilder {
    name_of(true)
}

fn name_of(nullable: bool) -> ObjectBuilder {
    string(nullable)
        .pattern(Some(NAME))
        .max_length(Some(200))
        .examples([serde_json::json!("Asha Rao")])
        .description(Some(
            "Letters of any script, spaces and . ' - only (at least one letter, at most 200)",
        ))
}

/// 10–15 digits, optionally a leading `+`; spaces, dashes, dots and brackets between them
/// (`hms_kit::pii::Phone`).
const PHONE: &str = r"^\s*\+?[ .()-]*([0-9][ .()-]*){10,15}\s*$";

pub fn phone() -> ObjectBuilder {
    phone_of(false)
}

pub fn phone_opt() -> ObjectBuilder {
    phone_of(true)
}

fn phone_of(nullable: bool) -> ObjectBuilder {
    string(nullable)
        .pattern(Some(PHONE))
        .examples([serde_json::json!("9876543210")])
        .description(Some("10–15 digits, optionally with a leading +"))
}

/// An optional phone number where blank means none (a doctor's).
const PHONE_OR_BLANK: &str = r"^\s*$|^\s*\+?[ .()-]*([0-9][ .()-]*){10,15}\s*$";

pub fn phone_or_blank() -> ObjectBuilder {
    string(true)
        .pattern(Some(PHONE_OR_BLANK))
        .examples([serde_json::json!("9876543210")])
        .description(Some(
            "10–15 digits, optionally with a leading +; blank for none",
        ))
}

/// Part of a phone number to search by: it needs a digit.
pub fn phone_search() -> ObjectBuilder {
    string(true)
        .pattern(Some(r"[0-9+]"))
        .description(Some("Part of the phone number (digits)"))
}

/// Patient ids to look up (`GET /v1/patients?ids=`): 1 to 100 positive integers, separated
/// by commas, nothing else.
pub fn patient_ids() -> ObjectBuilder {
    string(true)
        .pattern(Some(r"^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,99}$"))
        .description(Some(
            "Patients to look up by id: 1 to 100 positive integers separated by commas",
        ))
}

/// Free text that must say something: not blank, at most 100 characters.
pub fn text() -> ObjectBuilder {
    text_of(false)
}

pub fn text_opt() -> ObjectBuilder {
    text_of(true)
}

fn text_of(nullable: bool) -> ObjectBuilder {
    string(nullable)
        .pattern(Some(r"\S"))
        .min_length(Some(1))
        .max_length(Some(100))
}

/// A reason given with a credit note or a refund: not blank.
pub fn reason() -> ObjectBuilder {
    string(false)
        .pattern(Some(r"\S"))
        .min_length(Some(1))
        .max_length(Some(500))
}

/// Money actually paid, refunded or credited: 0.01 to 10,000,000,000.00 (`Money::MAX`).
const POSITIVE: &str = r"^\s*(0*0\.(0[1-9]|[1-9][0-9]?)|0*[1-9][0-9]{0,9}(\.[0-9]{1,2})?|0*10000000000(\.0{1,2})?)\s*$";

pub fn positive_amount() -> ObjectBuilder {
    string(false)
        .pattern(Some(POSITIVE))
        .examples([serde_json::json!("525.00")])
        .description(Some(
            "Amount as a decimal string, at most two places: 0.01 to 10000000000.00",
        ))
}

/// A legacy bill's amount: 0.00 to 10,000,000,000.00 (`Money::MAX`).
const LEGACY_AMOUNT: &str = r"^\s*(0*[0-9]{1,10}(\.[0-9]{1,2})?|0*10000000000(\.0{1,2})?)\s*$";

pub fn legacy_amount() -> ObjectBuilder {
    string(false)
        .pattern(Some(LEGACY_AMOUNT))
        .examples([serde_json::json!("750.50")])
        .description(Some(
            "Amount as a decimal string, at most two places: 0.00 to 10000000000.00",
        ))
}

/// An e-mail address (`hms_kit::pii::Email`): one `@`, a local part of 1–64 characters, a
/// dotted domain of letters, digits and inner hyphens; blank means none.
const EMAIL: &str = r"^\s*$|^\s*[^\s@\x00-\x1f\x7f-\x9f]{1,64}@([\p{L}\p{N}]([\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+[\p{L}\p{N}]([\p{L}\p{N}-]*[\p{L}\p{N}])?\s*$";

pub fn email_opt() -> ObjectBuilder {
    string(true)
        .pattern(Some(EMAIL))
        .max_length(Some(254))
        .examples([serde_json::json!("asha@example.org")])
}

/// A date of birth: 1900-01-01 or later (a date in the future is a 422, `dob_in_future`).
const DOB: &str = r"^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}$";

pub fn dob() -> ObjectBuilder {
    dob_of(false)
}

pub fn dob_opt() -> ObjectBuilder {
    dob_of(true)
}

fn dob_of(nullable: bool) -> ObjectBuilder {
    string(nullable)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Date,
        )))
        .pattern(Some(DOB))
        .examples([serde_json::json!("1990-01-02")])
}

/// A price or a fee: 0.00 to 1,000,000.00 (`Money::MAX_PRICE`).
const PRICE: &str = r"^\s*(0*[0-9]{1,6}(\.[0-9]{1,2})?|0*1000000(\.0{1,2})?)\s*$";

pub fn price() -> ObjectBuilder {
    price_of(false)
}

pub fn price_opt() -> ObjectBuilder {
    price_of(true)
}

fn price_of(nullable: bool) -> ObjectBuilder {
    string(nullable)
        .pattern(Some(PRICE))
        .examples([serde_json::json!("500.00")])
        .description(Some(
            "Amount as a decimal string, at most two places: 0.00 to 1000000.00",
        ))
}

/// A word read in any case (and around spaces): one of `words`.
fn any_case(words: &[&str], nullable: bool) -> ObjectBuilder {
    let alternatives: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        regex_escape(c)
                    }
                })
                .collect()
        })
        .collect();
    string(nullable)
        .pattern(Some(format!(r"^\s*({})\s*$", alternatives.join("|"))))
        .description(Some(format!("One of {} (any case)", words.join(", "))))
}

fn regex_escape(c: char) -> String {
    if "\\^$.|?*+()[]{}-".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// A live payment method.
pub fn live_method() -> ObjectBuilder {
    any_case(&["CASH", "CARD", "UPI"], false)
}

/// An appointment status, as a legacy export writes it.
pub fn appointment_status() -> ObjectBuilder {
    any_case(&crate::models::APPOINTMENT_STATUSES, false)
}

/// An appointment status, to filter by.
pub fn appointment_status_opt() -> ObjectBuilder {
    any_case(&crate::models::APPOINTMENT_STATUSES, true)
}

/// A bill status, as a legacy export writes it.
pub fn bill_status() -> ObjectBuilder {
    any_case(&crate::models::BILL_STATUSES, false)
}

/// A bill status, to filter by.
pub fn bill_status_opt() -> ObjectBuilder {
    any_case(&crate::models::BILL_STATUSES, true)
}

/// Doses morning-noon-night, one digit each, at least one dose a day.
pub fn dosage() -> ObjectBuilder {
    string(false)
        .pattern(Some(
            r"^\s*([1-9]-[0-9]-[0-9]|[0-9]-[1-9]-[0-9]|[0-9]-[0-9]-[1-9])\s*$",
        ))
        .examples([serde_json::json!("1-0-1")])
        .description(Some("Doses morning-noon-night, e.g. 1-0-1"))
}

/// A shift's start in clinic time, `HH:MM` (`hms_kit::config::parse_hhmm`).
pub fn hhmm() -> ObjectBuilder {
    string(false)
        .pattern(Some(r"^\s*([01][0-9]|2[0-3]):[0-5][0-9]\s*$"))
        .examples([serde_json::json!("09:00")])
}

/// A shift's end in clinic time, `HH:MM`, up to `24:00`.
pub fn hhmm_end() -> ObjectBuilder {
    string(false)
        .pattern(Some(r"^\s*(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)\s*$"))
        .examples([serde_json::json!("18:00")])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documents' dialect (ECMA-262 with `u`) reads these patterns as the regex crate
    /// does, for the constructs used here.
    fn matches(pattern: &str, s: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(s)
    }

    #[test]
    fn amounts_match_their_bounds_exactly() {
        for ok in [
            "0.01",
            "1",
            "525.5",
            "525.00",
            "9999999999.99",
            "10000000000.00",
            "007.50",
        ] {
            assert!(matches(POSITIVE, ok), "{ok}");
            assert!(ok.parse::<crate::Money>().is_ok());
        }
        for bad in [
            "0",
            "0.00",
            "-1",
            "10000000000.01",
            "1.234",
            ".5",
            "1e3",
            "",
        ] {
            assert!(!matches(POSITIVE, bad), "{bad}");
        }
        for ok in ["0", "0.00", "500", "999999.99", "1000000.00"] {
            assert!(matches(PRICE, ok), "{ok}");
        }
        for bad in ["1000000.01", "-5", "12.345"] {
            assert!(!matches(PRICE, bad), "{bad}");
        }
    }

    #[test]
    fn emails_as_the_services_read_them() {
        for ok in ["asha@example.org", "a.b+c@mail.co.in", "", "  "] {
            assert!(matches(EMAIL, ok), "{ok}");
        }
        for bad in ["asha", "a@b", "a@-b.com", "a b@c.org", "a@b..org"] {
            assert!(!matches(EMAIL, bad), "{bad}");
        }
    }

    #[test]
    fn names_and_phones_as_the_services_read_them() {
        for ok in ["Asha Rao", "Zoë O'Brien-Smith", "अनन्या", "J. R. R. Tolkien"] {
            assert!(matches(NAME, ok), "{ok}");
        }
        for bad in ["A1B", "<script>", "", " ", "\u{200B}Asha", "Asha\u{202E}"] {
            assert!(!matches(NAME, bad), "{bad}");
        }
        for ok in ["9876543210", "+91 98765-43210", "(022) 2345 6789"] {
            assert!(matches(PHONE, ok), "{ok}");
        }
        for bad in ["12345", "98765x43210", "+91 98765 43210 12345 6"] {
            assert!(!matches(PHONE, bad), "{bad}");
        }
    }
}

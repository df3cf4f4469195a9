//! Personal fields as types: valid by construction, masked in `Debug`/`Display`.
//!
//! `Email`, `Phone` and `PersonName` can only be built through `parse`, so a stored value is
//! always valid; and whatever formats one into a log line (`?x`, `%x`, `{x:?}`) gets the mask
//! (`j***@mail.com`, `******0402`, `V***** S*****`). The raw value comes out only through
//! `expose()`, at the HTTP and database boundaries, and through `Serialize` for responses.

use serde::{Serialize, Serializer};
use std::fmt;

macro_rules! masked_type {
    ($name:ident, $mask:path) => {
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// The raw value, for storage and responses only; never for logs.
            pub fn expose(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&$mask(&self.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&$mask(&self.0))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

masked_type!(Email, mask_email);
masked_type!(Phone, mask_phone);
masked_type!(PersonName, mask_name);

impl Email {
    /// A plausible address: one `@`, a non-empty local part, a dotted domain, no spaces.
    pub fn parse(raw: &str) -> Result<Email, String> {
        let s = raw.trim();
        let invalid = || "is not a valid e-mail address (e.g. name@example.com)".to_string();
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.split_once('@').ok_or_else(invalid)?;
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return Err(invalid());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let labels_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !labels_ok {
            return Err(invalid());
        }
        Ok(Email(format!("{local}@{}", domain.to_ascii_lowercase())))
    }
}

impl Phone {
    /// 10–15 digits, optionally with a leading `+`; spaces, dashes, dots and brackets are
    /// dropped (`+91 98765-43210` → `+919876543210`).
    pub fn parse(raw: &str) -> Result<Phone, String> {
        let s = raw.trim();
        let (plus, rest) = match s.strip_prefix('+') {
            Some(r) => ("+", r),
            None => ("", s),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err("must contain only digits (10–15), optionally a leading +".into()),
            }
        }
        if !(10..=15).contains(&digits.len()) {
            return Err(format!("must have 10–15 digits, found {}", digits.len()));
        }
        Ok(Phone(format!("{plus}{digits}")))
    }
}

impl PersonName {
    /// 1–200 characters after trimming and joining runs of spaces, in Unicode NFC: letters of
    /// any script with their combining marks, spaces, and `. ' ’ -`; at least one letter.
    /// Digits, symbols, markup and invisible or direction-changing characters (U+200B,
    /// U+202E: format characters) are refused, so a name prints as what it says.
    pub fn parse(raw: &str) -> Result<PersonName, String> {
        use unicode_normalization::UnicodeNormalization;
        use unicode_properties::{GeneralCategoryGroup as G, UnicodeGeneralCategory};
        let s: String = raw.nfc().collect();
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if s.is_empty() {
            return Err("is required".into());
        }
        if s.chars().count() > 200 {
            return Err("must be at most 200 characters".into());
        }
        let allowed = |c: char| {
            matches!(c, ' ' | '.' | '\'' | '’' | '-')
                || matches!(c.general_category_group(), G::Letter | G::Mark)
        };
        if let Some(bad) = s.chars().find(|c| !allowed(*c)) {
            let shown = if bad.is_control() || bad.general_category_group() == G::Other {
                format!("U+{:04X}", bad as u32)
            } else {
                format!("'{bad}'")
            };
            return Err(format!(
                "must be a name: letters (any script), spaces and . ' - only; {shown} is not allowed"
            ));
        }
        if !s.chars().any(|c| c.general_category_group() == G::Letter) {
            return Err("must be a name: it needs at least one letter".into());
        }
        Ok(PersonName(s))
    }
}

/// `john@mail.com` → `j***@mail.com`.
pub fn mask_email(s: &str) -> String {
    match s.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `9227680402` → `******0402`.
pub fn mask_phone(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let keep = chars.len().saturating_sub(4);
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < keep { '*' } else { *c })
        .collect()
}

/// `Vivaan Sharma` → `V***** S*****`.
pub fn mask_name(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(first) => format!("{first}{}", "*".repeat(cs.count())),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_way_of_formatting() {
        let e = Email::parse("john@mail.com").unwrap();
        let p = Phone::parse("9227680402").unwrap();
        let n = PersonName::parse("Vivaan  Sharma").unwrap();
        assert_eq!(format!("{e} {e:?}"), "j***@mail.com j***@mail.com");
        assert_eq!(format!("{p:?}"), "******0402");
        assert_eq!(format!("{n}"), "V***** S*****");
        assert_eq!(n.expose(), "Vivaan Sharma");
        assert_eq!(serde_json::to_string(&e).unwrap(), "\"john@mail.com\"");
    }

    #[test]
    fn parses_only_valid_values() {
        assert!(Email::parse("a@b.co").is_ok());
        for bad in [
            "",
            "a",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "@b.com",
            "a@.com",
            "a@b..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Phone::parse("+91 98765-43210").unwrap().expose(),
            "+919876543210"
        );
        for bad in ["12345", "98765x43210", "1234567890123456", ""] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse("1234").is_err());
        for bad in [
            "A1B",
            "<script>alert(1)</script>",
            "Ann\u{200B}a",
            "Ann\u{202E}a",
            "Bob\u{7}",
            "Jo;hn",
            "\u{0301}",
        ] {
            assert!(PersonName::parse(bad).is_err(), "{bad:?} is refused");
        }
        for good in [
            "Zoë O'Brien",
            "José María",
            "ज़ोया शर्मा",
            "Dr. Anil Rao",
            "Mary-Jane",
            "Nguyễn Văn An",
            "李小龍",
            "O’Neil",
            "Jose\u{0301}",
        ] {
            assert!(PersonName::parse(good).is_ok(), "{good:?} is a name");
        }
        // Stored composed: the same name typed two ways is one value.
        assert_eq!(
            PersonName::parse("Jose\u{0301}").unwrap(),
            PersonName::parse("Jos\u{e9}").unwrap()
        );
        assert!(PersonName::parse("A1B").unwrap_err().contains("'1'"));
        assert!(PersonName::parse("A\u{202E}B")
            .unwrap_err()
            .contains("U+202E"));
    }
}

//! Keyset pagination: `?limit=&cursor=` in, `{items, next_cursor}` out.
//!
//! Lists are ordered by their integer id; the cursor is the last id of the page, tagged with
//! its format (`k1.<id>`) so it can change without misreading old ones. A row inserted or deleted between pages never makes another
//! row appear twice or go missing, which offsets cannot promise.

use crate::error::Error;
use hms_client::models::Page;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// Rows with a key greater than this come next.
    pub after: Option<i64>,
}

impl PageRequest {
    /// `limit` 1–500 (default 50) and an optional cursor from a previous page.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::validation(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match cursor {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                Error::validation("cursor", "cursor is not one this service issued")
            })?),
        };
        Ok(PageRequest { limit, after })
    }

    /// How many rows to fetch: one more than the page, to know whether another page exists.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// The lower bound to query with (`key > after`).
    pub fn after_or_min(&self) -> i64 {
        self.after.unwrap_or(i64::MIN)
    }

    /// Cuts the fetched rows to a page and computes the next cursor.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> i64) -> Page<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| encode_cursor(key(r)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// What a cursor looks like, declared in every OpenAPI document: any string of this form is a
/// cursor the service takes, so a contract checker's well-formed cursor is never refused.
pub const CURSOR_PATTERN: &str = r"^k1\.[0-9]{1,18}$";

fn encode_cursor(key: i64) -> String {
    format!("k1.{key}")
}

fn decode_cursor(c: &str) -> Option<i64> {
    let digits = c.strip_prefix("k1.")?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_trip_and_bad_input_is_refused() {
        let req = PageRequest::parse(Some(2), None).unwrap();
        let page = req.page(vec![1, 2, 3], |x| *x);
        assert_eq!(page.items, vec![1, 2]);
        let next = PageRequest::parse(Some(2), page.next_cursor.as_deref()).unwrap();
        assert_eq!(next.after, Some(2));
        assert!(req.page(vec![1, 2], |x| *x).next_cursor.is_none());
        assert_eq!(
            PageRequest::parse(Some(501), None).unwrap_err().code,
            "validation_failed"
        );
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(None, Some("garbage!")).is_err());
        assert!(PageRequest::parse(None, Some("k1.-4")).is_err());
        assert!(PageRequest::parse(None, Some("k1.")).is_err());
        assert!(PageRequest::parse(None, Some("")).is_err());
        assert_eq!(
            page.next_cursor.as_deref(),
            Some("k1.2"),
            "of the declared form"
        );
        assert_eq!(
            PageRequest::parse(None, Some("k1.999999999999999999"))
                .unwrap()
                .after,
            Some(999_999_999_999_999_999)
        );
    }
}

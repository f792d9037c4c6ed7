//! Conversions between JSON and SQL column values that every dialect shares.
//!
//! Into the database, a parameter is read as the type the database expects: a number may also be
//! given as text (`"42"`), a boolean as `"true"`/`"false"`, a timestamp as RFC 3339 text. Out of
//! the database, columns become their JSON kind:
//!
//! | SQL | JSON |
//! |---|---|
//! | integers, floats | number |
//! | `numeric`/`decimal` | number when the value fits a double exactly, else text (no digit is lost) |
//! | booleans | `true`/`false` |
//! | `json`/`jsonb` | the value itself |
//! | `timestamptz`, MySQL `timestamp` | RFC 3339 text in UTC, `2026-11-25T12:00:00Z` |
//! | `timestamp`, `datetime` | RFC 3339 text without an offset, `2026-11-25T12:00:00` |
//! | `date`, `time` | `2026-11-25`, `12:00:00` |
//! | binary | base64 text |
//! | `NULL` | `null` |

use std::str::FromStr;

use base64::Engine as _;
use serde_json::Value;
use sqlx::types::BigDecimal;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use weft_core::json_kind;

/// A whole number, from a number or its text.
pub fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("{n} is not a whole number")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a whole number")),
        other => Err(format!(
            "expected a whole number, found {}",
            json_kind(other)
        )),
    }
}

/// A whole number that fits the column's size.
pub fn int_in<T: TryFrom<i64>>(v: &Value, what: &str) -> Result<T, String> {
    let n = int(v)?;
    T::try_from(n).map_err(|_| format!("{n} does not fit a {what}"))
}

/// A floating-point number, from a number or its text.
pub fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number")),
        other => Err(format!("expected a number, found {}", json_kind(other))),
    }
}

/// A boolean, from `true`/`false` or their text.
pub fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(format!(
            "expected true or false, found {}",
            json_kind(other)
        )),
    }
}

/// Text: a string as it is, anything else as JSON text.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An exact decimal, from a number or its text.
pub fn decimal(v: &Value) -> Result<BigDecimal, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("expected a number, found {}", json_kind(other))),
    };
    BigDecimal::from_str(&text).map_err(|_| format!("`{text}` is not a number"))
}

/// A point in time, from RFC 3339 text (`2026-11-25T12:00:00Z`, a space instead of `T` is fine).
pub fn timestamptz(v: &Value) -> Result<DateTime<Utc>, String> {
    let s = as_text(v, "a timestamp")?;
    DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("`{s}` is not an RFC 3339 timestamp such as 2026-11-25T12:00:00Z"))
}

/// A date and time without an offset; RFC 3339 text with an offset is converted to UTC.
pub fn timestamp(v: &Value) -> Result<NaiveDateTime, String> {
    let s = as_text(v, "a timestamp")?;
    let t = s.replacen(' ', "T", 1);
    NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| DateTime::parse_from_rfc3339(&t).map(|d| d.naive_utc()))
        .map_err(|_| format!("`{s}` is not a timestamp such as 2026-11-25T12:00:00"))
}

/// A date, `2026-11-25`.
pub fn date(v: &Value) -> Result<NaiveDate, String> {
    let s = as_text(v, "a date")?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date such as 2026-11-25"))
}

/// A time of day, `12:00:00` or `12:00:00.5`.
pub fn time(v: &Value) -> Result<NaiveTime, String> {
    let s = as_text(v, "a time")?;
    NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
        .map_err(|_| format!("`{s}` is not a time such as 12:00:00"))
}

fn as_text<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!(
            "expected {what} as text, found {}",
            json_kind(other)
        )),
    }
}

/// A decimal as JSON: a number when a double holds it exactly, else its text.
pub fn decimal_json(d: &BigDecimal) -> Value {
    if let Ok(f) = d.to_string().parse::<f64>()
        && f.is_finite()
        && BigDecimal::from_str(&f.to_string()).is_ok_and(|back| back == *d)
    {
        if d.is_integer() && f.abs() < 9.0e15 {
            return Value::from(f as i64);
        }
        if let Some(n) = serde_json::Number::from_f64(f) {
            return Value::Number(n);
        }
    }
    Value::String(d.normalized().to_plain_string())
}

/// A point in time as RFC 3339 text in UTC.
pub fn timestamptz_json(t: DateTime<Utc>) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
}

/// A date and time without an offset as RFC 3339 text without one.
pub fn timestamp_json(t: NaiveDateTime) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

/// A float as JSON; NaN and infinities, which JSON cannot carry, become text.
pub fn float_json(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(f.to_string()))
}

/// Bytes from base64 text, the form binary columns are read as.
pub fn bytes(v: &Value) -> Result<Vec<u8>, String> {
    let s = as_text(v, "bytes (base64)")?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| format!("`{s}` is not base64; binary values are written and read as base64"))
}

/// Bytes as base64 text.
pub fn bytes_json(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_accept_their_text_forms() {
        assert_eq!(int(&json!(42)), Ok(42));
        assert_eq!(int(&json!("42")), Ok(42));
        assert_eq!(int(&json!(42.0)), Ok(42));
        assert_eq!(int(&json!(4.5)), Err("4.5 is not a whole number".into()));
        assert_eq!(
            int_in::<i16>(&json!(70000), "smallint"),
            Err("70000 does not fit a smallint".into())
        );
        assert_eq!(boolean(&json!("true")), Ok(true));
        assert_eq!(
            boolean(&json!(1)),
            Err("expected true or false, found a number".into())
        );
        assert_eq!(text(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(
            timestamptz(&json!("2026-11-25 12:00:00+01:00"))
                .unwrap()
                .to_rfc3339(),
            "2026-11-25T11:00:00+00:00"
        );
        assert_eq!(
            timestamp(&json!("2026-11-25T12:00:00Z")).unwrap(),
            timestamp(&json!("2026-11-25 12:00:00")).unwrap()
        );
        assert!(date(&json!("25.11.2026")).is_err());
        assert_eq!(decimal(&json!("12.50")).unwrap().to_string(), "12.50");
    }

    #[test]
    fn results_keep_every_digit() {
        let d = |s: &str| decimal_json(&BigDecimal::from_str(s).unwrap());
        assert_eq!(d("12.50"), json!(12.5));
        assert_eq!(d("7"), json!(7));
        assert_eq!(d("0.1"), json!(0.1));
        assert_eq!(
            d("12345678901234567890.123"),
            json!("12345678901234567890.123")
        );
        assert_eq!(float_json(f64::NAN), json!("NaN"));
        assert_eq!(
            timestamptz_json(timestamptz(&json!("2026-11-25T12:00:00.250Z")).unwrap()),
            json!("2026-11-25T12:00:00.250Z")
        );
        assert_eq!(
            timestamp_json(timestamp(&json!("2026-11-25T12:00:00")).unwrap()),
            json!("2026-11-25T12:00:00")
        );
        assert_eq!(bytes_json(b"hi"), json!("aGk="));
    }
}

//! MySQL and MariaDB specifics: parameters are bound by their JSON kind (the server converts text
//! to the column's type), and columns are read by their type.
//!
//! MariaDB stores `JSON` columns as `LONGTEXT`, so they arrive as text there; `fromjson` in jq
//! turns them into values. Timestamps are sent as the text given; MySQL wants
//! `2026-11-25 12:00:00` (no `T`, no offset), which jq's `sub("T"; " ")` or `strftime` produce.

use serde_json::Value;
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{BigDecimal, Json};
use sqlx::{Arguments, Column, Row, TypeInfo, ValueRef};

use super::SqlError;
use super::value;

/// Binds `params` by their JSON kind: objects and lists as JSON text.
pub fn arguments(params: &[Value]) -> Result<MySqlArguments, SqlError> {
    let mut args = MySqlArguments::default();
    for (i, v) in params.iter().enumerate() {
        let added = match v {
            Value::Null => args.add(None::<String>),
            Value::Bool(b) => args.add(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => args.add(i),
                (None, Some(u)) => args.add(u),
                _ => args.add(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => args.add(s.clone()),
            other => args.add(other.to_string()),
        };
        added.map_err(|e| SqlError::Input(format!("parameter {}: {e}", i + 1)))?;
    }
    Ok(args)
}

fn get<'r, T: sqlx::Decode<'r, sqlx::MySql> + sqlx::Type<sqlx::MySql>>(
    row: &'r MySqlRow,
    i: usize,
) -> Result<T, String> {
    row.try_get::<T, _>(i).map_err(|e| e.to_string())
}

fn unchecked<'r, T: sqlx::Decode<'r, sqlx::MySql>>(
    row: &'r MySqlRow,
    i: usize,
) -> Result<T, String> {
    row.try_get_unchecked::<T, _>(i).map_err(|e| e.to_string())
}

/// Column `i` of a row as its JSON kind (see [`value`]).
pub fn column_json(row: &MySqlRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let name = row.columns()[i].type_info().name();
    Ok(match name {
        "BOOLEAN" => Value::Bool(get(row, i)?),
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => {
            Value::from(unchecked::<i64>(row, i)?)
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED"
        | "BIGINT UNSIGNED" | "YEAR" => Value::from(unchecked::<u64>(row, i)?),
        "FLOAT" => value::float_json(get::<f32>(row, i)? as f64),
        "DOUBLE" => value::float_json(get::<f64>(row, i)?),
        "DECIMAL" => value::decimal_json(&get::<BigDecimal>(row, i)?),
        "JSON" => get::<Json<Value>>(row, i)?.0,
        "TIMESTAMP" => value::timestamptz_json(get::<DateTime<Utc>>(row, i)?),
        "DATETIME" => value::timestamp_json(get::<NaiveDateTime>(row, i)?),
        "DATE" => Value::String(get::<NaiveDate>(row, i)?.to_string()),
        "TIME" => match get::<NaiveTime>(row, i) {
            Ok(t) => Value::String(t.to_string()),
            // A duration beyond a day, or negative, is not a time of day: keep MySQL's text.
            Err(_) => Value::String(unchecked::<String>(row, i)?),
        },
        // The binary flag is set for `_bin` collations too (MariaDB's JSON is LONGTEXT in
        // utf8mb4_bin): only the `binary` character set means bytes.
        "BIT" | "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB"
        | "GEOMETRY"
            if !<String as sqlx::Type<sqlx::MySql>>::compatible(row.columns()[i].type_info()) =>
        {
            value::bytes_json(&unchecked::<Vec<u8>>(row, i)?)
        }
        _ => Value::String(unchecked::<String>(row, i)?),
    })
}

//! SQLite specifics: parameters are bound by their JSON kind, and columns are read by the type of
//! the value stored (SQLite types values, not columns), except that a column declared `BOOLEAN`
//! reads as `true`/`false`. JSON is stored as text in SQLite and arrives as text.

use serde_json::Value;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Column, Row, TypeInfo, ValueRef};

use super::SqlError;
use super::value;

/// Binds `params` by their JSON kind: objects and lists as JSON text.
pub fn arguments(params: &[Value]) -> Result<SqliteArguments, SqlError> {
    let mut args = SqliteArguments::default();
    for (i, v) in params.iter().enumerate() {
        let added = match v {
            Value::Null => args.add(None::<String>),
            Value::Bool(b) => args.add(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => args.add(i),
                None => args.add(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => args.add(s.clone()),
            other => args.add(other.to_string()),
        };
        added.map_err(|e| SqlError::Input(format!("parameter {}: {e}", i + 1)))?;
    }
    Ok(args)
}

/// Column `i` of a row by the type of the value stored; `BOOLEAN` columns as booleans.
pub fn column_json(row: &SqliteRow, i: usize) -> Result<Value, String> {
    let declared = row.columns()[i].type_info().name();
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let stored = raw.type_info().name().to_string();
    let unchecked = |e: sqlx::Error| e.to_string();
    Ok(match (declared, stored.as_str()) {
        ("BOOLEAN", "INTEGER") => {
            Value::Bool(row.try_get_unchecked::<i64, _>(i).map_err(unchecked)? != 0)
        }
        (_, "INTEGER") => Value::from(row.try_get_unchecked::<i64, _>(i).map_err(unchecked)?),
        (_, "REAL") => value::float_json(row.try_get_unchecked::<f64, _>(i).map_err(unchecked)?),
        (_, "BLOB") => {
            value::bytes_json(&row.try_get_unchecked::<Vec<u8>, _>(i).map_err(unchecked)?)
        }
        _ => Value::String(row.try_get_unchecked::<String, _>(i).map_err(unchecked)?),
    })
}

//! PostgreSQL specifics: parameters are bound as the types PostgreSQL infers for them (the
//! statement is prepared first, then each JSON value is converted to its parameter's type), and
//! columns are read by their type.
//!
//! Preparing first is what lets `where created_at > $1` take RFC 3339 text and `where id = $1` take
//! `"42"`: without it, text would be sent as `text` and PostgreSQL would refuse to compare it.

use serde_json::Value;
use sqlx::postgres::{PgArguments, PgConnection, PgRow, PgTypeInfo, PgTypeKind};
use sqlx::types::Json;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{BigDecimal, Uuid};
use sqlx::{Arguments, Either, Executor, Row, Statement, TypeInfo, ValueRef};

use super::value;
use super::{SqlError, check_count, sql_str};

/// Prepares `sql` and binds `params` as the types PostgreSQL inferred.
pub async fn arguments(
    conn: &mut PgConnection,
    sql: &str,
    params: &[Value],
) -> Result<PgArguments, SqlError> {
    let statement = (&mut *conn).prepare(sql_str(sql)).await?;
    check_count(statement.parameters(), params.len())?;
    let types: Vec<PgTypeInfo> = match statement.parameters() {
        Some(Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    let mut args = PgArguments::default();
    for (i, (v, t)) in params.iter().zip(&types).enumerate() {
        bind(&mut args, v, t)
            .map_err(|m| SqlError::Input(format!("parameter ${} ({}): {m}", i + 1, t.name())))?;
    }
    Ok(args)
}

macro_rules! add {
    ($args:expr, $v:expr, $ty:ty, $conv:expr) => {{
        let value: Option<$ty> = match $v {
            Value::Null => None,
            v => Some($conv(v)?),
        };
        $args.add(value).map_err(|e| e.to_string())
    }};
}

macro_rules! add_list {
    ($args:expr, $v:expr, $ty:ty, $conv:expr) => {{
        let value: Option<Vec<$ty>> = match $v {
            Value::Null => None,
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| $conv(item).map_err(|m| format!("item {i}: {m}")))
                    .collect::<Result<_, String>>()?,
            ),
            other => {
                return Err(format!(
                    "expected a list, found {}",
                    weft_core::json_kind(other)
                ));
            }
        };
        $args.add(value).map_err(|e| e.to_string())
    }};
}

fn uuid(v: &Value) -> Result<Uuid, String> {
    let s = value::text(v);
    Uuid::parse_str(&s).map_err(|_| format!("`{s}` is not a UUID"))
}

fn bind(args: &mut PgArguments, v: &Value, t: &PgTypeInfo) -> Result<(), String> {
    let t = match t.kind() {
        PgTypeKind::Domain(base) => base,
        _ => t,
    };
    if v.is_null() {
        // NULL is sent without bytes, whatever the parameter's type.
        return args.add(None::<String>).map_err(|e| e.to_string());
    }
    match t.name() {
        "BOOL" => add!(args, v, bool, value::boolean),
        "INT2" => add!(args, v, i16, |v| value::int_in::<i16>(v, "smallint")),
        "INT4" => add!(args, v, i32, |v| value::int_in::<i32>(v, "integer")),
        "INT8" => add!(args, v, i64, value::int),
        "FLOAT4" => add!(args, v, f32, |v| value::float(v).map(|f| f as f32)),
        "FLOAT8" => add!(args, v, f64, value::float),
        "NUMERIC" => add!(args, v, BigDecimal, value::decimal),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "CITEXT" => {
            add!(args, v, String, |v| Ok::<_, String>(value::text(v)))
        }
        "JSON" | "JSONB" => {
            let value: Option<Json<&Value>> = (!v.is_null()).then_some(Json(v));
            args.add(value).map_err(|e| e.to_string())
        }
        "TIMESTAMPTZ" => add!(args, v, DateTime<Utc>, value::timestamptz),
        "TIMESTAMP" => add!(args, v, NaiveDateTime, value::timestamp),
        "DATE" => add!(args, v, NaiveDate, value::date),
        "TIME" => add!(args, v, NaiveTime, value::time),
        "UUID" => add!(args, v, Uuid, uuid),
        "BYTEA" => add!(args, v, Vec<u8>, value::bytes),
        "BOOL[]" => add_list!(args, v, bool, value::boolean),
        "INT4[]" => add_list!(args, v, i32, |v| value::int_in::<i32>(v, "integer")),
        "INT8[]" => add_list!(args, v, i64, value::int),
        "FLOAT8[]" => add_list!(args, v, f64, value::float),
        "TEXT[]" | "VARCHAR[]" => add_list!(args, v, String, |v| Ok::<_, String>(value::text(v))),
        "UUID[]" => add_list!(args, v, Uuid, uuid),
        _ if matches!(t.kind(), PgTypeKind::Enum(_)) => {
            // An enum's binary form is its label.
            add!(args, v, String, |v| Ok::<_, String>(value::text(v)))
        }
        other => Err(format!(
            "Weft cannot bind a {other} parameter yet; cast it from text in the SQL, such as `$1::text::{}`",
            other.to_lowercase()
        )),
    }
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    i: usize,
) -> Result<T, String> {
    row.try_get::<T, _>(i).map_err(|e| e.to_string())
}

fn list<'r, T>(row: &'r PgRow, i: usize, f: impl Fn(T) -> Value) -> Result<Value, String>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    Vec<Option<T>>: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let items: Vec<Option<T>> = get(row, i)?;
    Ok(Value::Array(
        items
            .into_iter()
            .map(|x| x.map_or(Value::Null, &f))
            .collect(),
    ))
}

/// Column `i` of a row as its JSON kind (see [`value`]).
pub fn column_json(row: &PgRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let info = raw.type_info().into_owned();
    let info = match info.kind() {
        PgTypeKind::Domain(base) => base.clone(),
        _ => info,
    };
    Ok(match info.name() {
        "BOOL" => Value::Bool(get(row, i)?),
        // What functions such as pg_notify return.
        "VOID" => Value::Null,
        "INT2" => Value::from(get::<i16>(row, i)?),
        "INT4" => Value::from(get::<i32>(row, i)?),
        "INT8" => Value::from(get::<i64>(row, i)?),
        "OID" => Value::from(get::<sqlx::postgres::types::Oid>(row, i)?.0),
        "FLOAT4" => value::float_json(get::<f32>(row, i)? as f64),
        "FLOAT8" => value::float_json(get::<f64>(row, i)?),
        "NUMERIC" => value::decimal_json(&get::<BigDecimal>(row, i)?),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "CITEXT" | "\"CHAR\"" => Value::String(get(row, i)?),
        "JSON" | "JSONB" => get::<Json<Value>>(row, i)?.0,
        "TIMESTAMPTZ" => value::timestamptz_json(get(row, i)?),
        "TIMESTAMP" => value::timestamp_json(get(row, i)?),
        "DATE" => Value::String(get::<NaiveDate>(row, i)?.to_string()),
        "TIME" => Value::String(get::<NaiveTime>(row, i)?.to_string()),
        "UUID" => Value::String(get::<Uuid>(row, i)?.to_string()),
        "BYTEA" => value::bytes_json(&get::<Vec<u8>>(row, i)?),
        "BOOL[]" => list::<bool>(row, i, Value::Bool)?,
        "INT2[]" => list::<i16>(row, i, Value::from)?,
        "INT4[]" => list::<i32>(row, i, Value::from)?,
        "INT8[]" => list::<i64>(row, i, Value::from)?,
        "FLOAT8[]" => list::<f64>(row, i, value::float_json)?,
        "TEXT[]" | "VARCHAR[]" => list::<String>(row, i, Value::String)?,
        "JSON[]" | "JSONB[]" => list::<Json<Value>>(row, i, |j| j.0)?,
        "UUID[]" => list::<Uuid>(row, i, |u| Value::String(u.to_string()))?,
        _ if matches!(info.kind(), PgTypeKind::Enum(_)) => {
            let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
            let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        other => {
            return Err(format!(
                "Weft cannot read {other} values yet; cast the column to text in the SQL, such as `col::text`"
            ));
        }
    })
}

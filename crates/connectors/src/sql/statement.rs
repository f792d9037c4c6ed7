//! The SQL text Weft writes itself, for `insert` and `upsert`: quoted identifiers, placeholders and
//! the dialect's upsert clause. Pure functions, so every shape is unit-tested without a database.
//!
//! Only identifiers (table and column names, which the lint requires to be written in the file) are
//! put into SQL text, always quoted; every value is a bound parameter.

use serde_json::{Map, Value};

use super::config::Dialect;

/// Most bound parameters in one statement: below PostgreSQL's and MySQL's 65,535 and SQLite's
/// 32,766.
pub const MAX_PARAMS: usize = 30_000;
/// Most rows in one statement, whatever the column count.
pub const MAX_BATCH_ROWS: usize = 1_000;

/// Quotes an identifier, `schema.table` as two parts. Refuses names that no database accepts.
pub fn quote_ident(dialect: Dialect, name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, part) in name.split('.').enumerate() {
        if part.is_empty() || part.len() > 64 || part.contains('\0') {
            return Err(format!("`{name}` is not a usable table or column name"));
        }
        if i > 0 {
            out.push('.');
        }
        let quote = match dialect {
            Dialect::Mysql => '`',
            Dialect::Postgres | Dialect::Sqlite => '"',
        };
        out.push(quote);
        for c in part.chars() {
            if c == quote {
                out.push(quote);
            }
            out.push(c);
        }
        out.push(quote);
    }
    if name.split('.').count() > 2 {
        return Err(format!(
            "`{name}` has more than one `.`; write `table` or `schema.table`"
        ));
    }
    Ok(out)
}

/// A column name: one part, no `.`.
fn quote_column(dialect: Dialect, name: &str) -> Result<String, String> {
    if name.contains('.') {
        return Err(format!("column name `{name}` must not contain `.`"));
    }
    quote_ident(dialect, name)
}

/// The placeholder of parameter `index` (0-based).
pub fn placeholder(dialect: Dialect, index: usize) -> String {
    match dialect {
        Dialect::Postgres => format!("${}", index + 1),
        Dialect::Mysql | Dialect::Sqlite => "?".to_string(),
    }
}

/// Rows to write: the columns of the first row, and every row's values in that order.
#[derive(Debug, PartialEq)]
pub struct Rows {
    /// Column names, in the order of the first row's keys.
    pub columns: Vec<String>,
    /// One list of values per row, in column order.
    pub values: Vec<Vec<Value>>,
}

/// Reads `rows:`: one object or a list of objects that all have the same keys.
pub fn rows(value: &Value) -> Result<Rows, String> {
    let list: Vec<&Map<String, Value>> = match value {
        Value::Object(row) => vec![row],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(row) => Ok(row),
                other => Err(format!(
                    "`rows[{i}]` must be an object of column values, found {}",
                    weft_core::json_kind(other)
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "`rows` must be an object or a list of objects, found {}",
                weft_core::json_kind(other)
            ));
        }
    };
    let Some(first) = list.first() else {
        return Ok(Rows {
            columns: Vec::new(),
            values: Vec::new(),
        });
    };
    if first.is_empty() {
        return Err("`rows[0]` has no columns".into());
    }
    let columns: Vec<String> = first.keys().cloned().collect();
    let mut values = Vec::with_capacity(list.len());
    for (i, row) in list.iter().enumerate() {
        if row.len() != columns.len() || columns.iter().any(|c| !row.contains_key(c)) {
            let keys: Vec<&str> = row.keys().map(String::as_str).collect();
            return Err(format!(
                "`rows[{i}]` has the columns [{}] but `rows[0]` has [{}]; every row must have the same columns (write null for a missing value)",
                keys.join(", "),
                columns.join(", ")
            ));
        }
        values.push(columns.iter().map(|c| row[c].clone()).collect());
    }
    Ok(Rows { columns, values })
}

/// Keeps the last row of each key, in first-seen order, so that one statement never writes a key
/// twice (PostgreSQL refuses that in `ON CONFLICT DO UPDATE`).
pub fn last_per_key(rows: &mut Rows, key: &[String]) -> Result<(), String> {
    let positions: Vec<usize> = key
        .iter()
        .map(|k| {
            rows.columns.iter().position(|c| c == k).ok_or_else(|| {
                format!(
                    "key column `{k}` is not among the rows' columns [{}]",
                    rows.columns.join(", ")
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut kept: Vec<Vec<Value>> = Vec::with_capacity(rows.values.len());
    for row in rows.values.drain(..) {
        let id: Vec<&Value> = positions.iter().map(|&p| &row[p]).collect();
        let id = serde_json::to_string(&id).unwrap_or_default();
        match seen.get(&id) {
            Some(&at) => kept[at] = row,
            None => {
                seen.insert(id, kept.len());
                kept.push(row);
            }
        }
    }
    rows.values = kept;
    Ok(())
}

/// How many rows go into one statement.
pub fn batch_rows(columns: usize) -> usize {
    (MAX_PARAMS / columns.max(1)).clamp(1, MAX_BATCH_ROWS)
}

/// What to do with a row whose key exists already.
#[derive(Debug)]
pub struct Upsert<'a> {
    /// The conflict columns (a primary key or unique index).
    pub key: &'a [String],
    /// The columns to overwrite; empty keeps the existing row.
    pub update: &'a [String],
}

/// `INSERT INTO table (columns) VALUES (…), (…)` for `count` rows, with the dialect's upsert clause.
pub fn insert(
    dialect: Dialect,
    table: &str,
    columns: &[String],
    count: usize,
    upsert: Option<&Upsert<'_>>,
) -> Result<String, String> {
    let quoted: Vec<String> = columns
        .iter()
        .map(|c| quote_column(dialect, c))
        .collect::<Result<_, _>>()?;
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quote_ident(dialect, table)?,
        quoted.join(", ")
    );
    let mut index = 0;
    for row in 0..count {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns.len() {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&placeholder(dialect, index));
            index += 1;
        }
        sql.push(')');
    }
    let Some(upsert) = upsert else {
        return Ok(sql);
    };
    let update: Vec<String> = upsert
        .update
        .iter()
        .map(|c| quote_column(dialect, c))
        .collect::<Result<_, _>>()?;
    match dialect {
        Dialect::Postgres | Dialect::Sqlite => {
            let key: Vec<String> = upsert
                .key
                .iter()
                .map(|c| quote_column(dialect, c))
                .collect::<Result<_, _>>()?;
            sql.push_str(&format!(" ON CONFLICT ({}) DO ", key.join(", ")));
            if update.is_empty() {
                sql.push_str("NOTHING");
            } else {
                let sets: Vec<String> = update
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                sql.push_str(&format!("UPDATE SET {}", sets.join(", ")));
            }
        }
        Dialect::Mysql => {
            // MySQL and MariaDB match any unique key; `key` only decides the default update list.
            let sets: Vec<String> = if update.is_empty() {
                let first = quote_column(dialect, &upsert.key[0])?;
                vec![format!("{first} = {first}")]
            } else {
                update
                    .iter()
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect()
            };
            sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", ")));
        }
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn identifiers_are_quoted_per_dialect() {
        let cases = [
            (Dialect::Postgres, "orders", Ok("\"orders\"")),
            (Dialect::Postgres, "shop.orders", Ok("\"shop\".\"orders\"")),
            (Dialect::Sqlite, "we\"ird", Ok("\"we\"\"ird\"")),
            (Dialect::Mysql, "orders", Ok("`orders`")),
            (Dialect::Mysql, "a`b", Ok("`a``b`")),
            (
                Dialect::Mysql,
                "",
                Err("`` is not a usable table or column name"),
            ),
            (
                Dialect::Postgres,
                "a..b",
                Err("`a..b` is not a usable table or column name"),
            ),
            (
                Dialect::Postgres,
                "a.b.c",
                Err("`a.b.c` has more than one `.`; write `table` or `schema.table`"),
            ),
        ];
        for (dialect, name, expected) in cases {
            assert_eq!(
                quote_ident(dialect, name),
                expected.map(str::to_string).map_err(str::to_string),
                "{dialect:?} {name}"
            );
        }
    }

    #[test]
    fn insert_and_upsert_statements() {
        let cols = s(&["id", "name"]);
        assert_eq!(
            insert(Dialect::Postgres, "t", &cols, 2, None).unwrap(),
            "INSERT INTO \"t\" (\"id\", \"name\") VALUES ($1, $2), ($3, $4)"
        );
        let key = s(&["id"]);
        let update = s(&["name"]);
        let up = Upsert {
            key: &key,
            update: &update,
        };
        assert_eq!(
            insert(Dialect::Postgres, "t", &cols, 1, Some(&up)).unwrap(),
            "INSERT INTO \"t\" (\"id\", \"name\") VALUES ($1, $2) ON CONFLICT (\"id\") DO UPDATE SET \"name\" = excluded.\"name\""
        );
        assert_eq!(
            insert(Dialect::Sqlite, "t", &cols, 1, Some(&up)).unwrap(),
            "INSERT INTO \"t\" (\"id\", \"name\") VALUES (?, ?) ON CONFLICT (\"id\") DO UPDATE SET \"name\" = excluded.\"name\""
        );
        assert_eq!(
            insert(Dialect::Mysql, "t", &cols, 2, Some(&up)).unwrap(),
            "INSERT INTO `t` (`id`, `name`) VALUES (?, ?), (?, ?) ON DUPLICATE KEY UPDATE `name` = VALUES(`name`)"
        );
        let nothing = Upsert {
            key: &key,
            update: &[],
        };
        assert_eq!(
            insert(Dialect::Postgres, "t", &cols, 1, Some(&nothing)).unwrap(),
            "INSERT INTO \"t\" (\"id\", \"name\") VALUES ($1, $2) ON CONFLICT (\"id\") DO NOTHING"
        );
        assert_eq!(
            insert(Dialect::Mysql, "t", &cols, 1, Some(&nothing)).unwrap(),
            "INSERT INTO `t` (`id`, `name`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `id` = `id`"
        );
        assert_eq!(
            insert(Dialect::Postgres, "t", &s(&["a.b"]), 1, None).unwrap_err(),
            "column name `a.b` must not contain `.`"
        );
    }

    #[test]
    fn rows_must_share_their_columns() {
        let r = rows(&json!({"id": 1, "name": "a"})).unwrap();
        assert_eq!(r.columns, s(&["id", "name"]));
        assert_eq!(r.values, vec![vec![json!(1), json!("a")]]);
        let r = rows(&json!([{"id": 1, "name": "a"}, {"name": "b", "id": 2}])).unwrap();
        assert_eq!(r.values[1], vec![json!(2), json!("b")]);
        assert_eq!(rows(&json!([])).unwrap().values.len(), 0);
        assert_eq!(
            rows(&json!([{"id": 1}, {"id": 2, "x": 3}])).unwrap_err(),
            "`rows[1]` has the columns [id, x] but `rows[0]` has [id]; every row must have the same columns (write null for a missing value)"
        );
        assert_eq!(
            rows(&json!([{"id": 1}, 7])).unwrap_err(),
            "`rows[1]` must be an object of column values, found a number"
        );
        assert_eq!(
            rows(&json!("x")).unwrap_err(),
            "`rows` must be an object or a list of objects, found text"
        );
    }

    #[test]
    fn the_last_row_of_a_key_wins() {
        let mut r =
            rows(&json!([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "c"}])).unwrap();
        last_per_key(&mut r, &s(&["id"])).unwrap();
        assert_eq!(
            r.values,
            vec![vec![json!(1), json!("c")], vec![json!(2), json!("b")]]
        );
        assert_eq!(
            last_per_key(&mut r, &s(&["nope"])).unwrap_err(),
            "key column `nope` is not among the rows' columns [id, v]"
        );
    }

    #[test]
    fn batches_stay_under_the_parameter_limit() {
        assert_eq!(batch_rows(1), MAX_BATCH_ROWS);
        assert_eq!(batch_rows(100), 300);
        assert_eq!(batch_rows(50_000), 1);
    }
}

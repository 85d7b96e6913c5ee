//! Tables, JSON and progress bars.

use inventory_kit::core::Order;
use serde_json::json;

/// Prints rows as an aligned table, or as a JSON array of objects with `--json` (numbers stay
/// numbers there).
pub(crate) fn print_rows(json: bool, header: &[&str], rows: Vec<Vec<serde_json::Value>>) {
    if json {
        let objects: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|row| {
                header
                    .iter()
                    .zip(row)
                    .map(|(k, v)| ((*k).to_owned(), v))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&objects).expect("strings serialise")
        );
        return;
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(header.iter().copied())
        .add_rows(rows.into_iter().map(|row| {
            row.into_iter()
                .map(|cell| match cell {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
        }));
    println!("{table}");
}

/// Prints a one-line result, or `{"message": ...}` with `--json`.
pub(crate) fn say(json: bool, message: impl std::fmt::Display) {
    if json {
        println!("{}", serde_json::json!({ "message": message.to_string() }));
    } else {
        println!("{message}");
    }
}

pub(crate) fn order_rows(orders: &[Order]) -> Vec<Vec<serde_json::Value>> {
    orders
        .iter()
        .map(|o| {
            vec![
                json!(o.id.to_string()),
                json!(o.created_at.format("%Y-%m-%d %H:%M:%S").to_string()),
                json!(o.status.to_string()),
                json!(o.buyer_email.to_string()),
                // Every line's product, and the units of all lines.
                json!(
                    o.lines
                        .iter()
                        .map(|l| l.product_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                json!(o.lines.iter().map(|l| l.quantity.get()).sum::<u64>()),
            ]
        })
        .collect()
}

pub(crate) const ORDER_HEADER: [&str; 6] = [
    "order_id",
    "created_at",
    "status",
    "buyer_email",
    "product_id",
    "quantity",
];

pub(crate) fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    // Drawn on stderr, and only when it is a terminal: scripts and tests see none of it.
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} ({{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

//! Everything `orderflow` prints: human output (order summaries, tables, one line
//! per status event, money and time formatting), machine output (`--json`: the
//! server's JSON as sent, NDJSON for `orders watch`), and the error messages for
//! stderr (problem+json, OAuth2 errors, unreachable servers).
//!
//! Human output shows times in the local time zone (`TZ`); JSON output is untouched.

use std::io::{self, Write};

use chrono::{DateTime, Local};

use crate::api::{self, Order, Reply, StatusEvent, TokenResponse, WatchUpdate};

/// `orderflow token`: the token alone on stdout, the rest on stderr.
pub fn token(reply: &Reply<TokenResponse>, json: bool) -> io::Result<()> {
    if json {
        return print_raw(&reply.raw);
    }
    let token = &reply.value;
    writeln!(io::stdout().lock(), "{}", token.access_token)?;
    let mut about = vec![token.token_type.clone().unwrap_or_else(|| "Bearer".into())];
    if let Some(scope) = &token.scope {
        about.push(format!("scope \"{scope}\""));
    }
    if let Some(secs) = token.expires_in {
        let at = i64::try_from(secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|lifetime| Local::now().checked_add_signed(lifetime));
        let at = at.map(|at| format!(" (at {})", at.format("%Y-%m-%d %H:%M:%S"))).unwrap_or_default();
        about.push(format!("expires in {}{at}", format_duration(secs)));
    }
    writeln!(io::stderr().lock(), "{}", about.join(", "))
}

/// `orders create` and `orders get`.
pub fn order(reply: &Reply<Order>, json: bool) -> io::Result<()> {
    if json {
        return print_raw(&reply.raw);
    }
    write!(io::stdout().lock(), "{}", order_summary(&reply.value))
}

/// `orders list` for people: a table, and on stderr how to get the next page.
pub fn page(orders: &[Order], next_cursor: Option<&str>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if orders.is_empty() {
        writeln!(out, "No orders.")?;
    } else {
        write!(out, "{}", orders_table(orders))?;
    }
    if let Some(cursor) = next_cursor {
        writeln!(io::stderr().lock(), "More orders: --cursor {cursor} (or --all)")?;
    }
    Ok(())
}

/// `orders list --json`: one page exactly as sent; with `--all`, every page's `data`
/// in one page-shaped document whose `next_cursor` is null.
pub fn pages_json(raw_pages: &[String]) -> io::Result<()> {
    if let [raw] = raw_pages {
        return print_raw(raw);
    }
    let mut data = Vec::new();
    for raw in raw_pages {
        if let Ok(serde_json::Value::Object(mut page)) = serde_json::from_str(raw)
            && let Some(serde_json::Value::Array(orders)) = page.remove("data")
        {
            data.extend(orders);
        }
    }
    print_raw(&serde_json::json!({"data": data, "next_cursor": null}).to_string())
}

/// `orders watch`: one line per event on stdout; reconnects are reported on stderr.
pub fn watch_update(update: WatchUpdate<'_>, json: bool) -> io::Result<()> {
    match update {
        WatchUpdate::Event(event) => {
            let line = if json { serde_json::to_string(event).map_err(io::Error::other)? } else { event_line(event) };
            let mut out = io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()
        }
        WatchUpdate::Reconnecting { attempt, max, reason, last_event_id } => {
            let after = last_event_id.map(|id| format!(" after event {id}")).unwrap_or_default();
            writeln!(
                io::stderr().lock(),
                "connection lost ({reason}); reconnecting{after} (attempt {attempt} of {max})"
            )
        }
    }
}

fn print_raw(raw: &str) -> io::Result<()> {
    writeln!(io::stdout().lock(), "{}", raw.trim_end())
}

/// The human view of one order.
pub fn order_summary(order: &Order) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: &str| out.push_str(&format!("{name:<10}{value}\n"));
    field("Order", &order.id);
    field("Status", &order.status);
    field("Total", &format_money(order.total_minor, &order.currency));
    if let Some(created) = &order.created_at {
        field("Created", &format_time(created, "%Y-%m-%d %H:%M:%S"));
    }
    if let Some(address) = &order.shipping_address {
        field("Ship to", &format_address(address));
    }
    let shipment = order.shipment.clone().unwrap_or_default();
    let shipment = match (shipment.carrier, shipment.tracking_number) {
        (None, None) => "not shipped yet".to_owned(),
        (carrier, tracking) => [carrier, tracking].into_iter().flatten().collect::<Vec<_>>().join(" "),
    };
    field("Shipment", &shipment);

    if !order.items.is_empty() {
        let mut items = Table::new(&[("SKU", false), ("QTY", true), ("UNIT PRICE", true), ("AMOUNT", true)]);
        for item in &order.items {
            let amount =
                i64::try_from(i128::from(item.quantity) * i128::from(item.unit_price_minor)).unwrap_or(i64::MAX);
            items.row(vec![
                item.sku.clone(),
                item.quantity.to_string(),
                format_money(item.unit_price_minor, &order.currency),
                format_money(amount, &order.currency),
            ]);
        }
        out.push('\n');
        out.push_str(&items.render());
    }
    if !order.history.is_empty() {
        out.push_str("\nHistory\n");
        for entry in &order.history {
            out.push_str(&format!("  {}  {}\n", format_time(&entry.at, "%Y-%m-%d %H:%M:%S"), entry.status));
        }
    }
    out
}

/// The `orders list` table.
pub fn orders_table(orders: &[Order]) -> String {
    let mut table = Table::new(&[("ID", false), ("STATUS", false), ("TOTAL", true), ("CREATED", false)]);
    for order in orders {
        table.row(vec![
            order.id.clone(),
            order.status.clone(),
            format_money(order.total_minor, &order.currency),
            order.created_at.as_deref().map(|t| format_time(t, "%Y-%m-%d %H:%M:%S")).unwrap_or_default(),
        ]);
    }
    table.render()
}

/// `14:19:35  SHIPPED           DHL OF1234`.
pub fn event_line(event: &StatusEvent) -> String {
    let time = event.at.as_deref().map(|t| format_time(t, "%H:%M:%S")).unwrap_or_else(|| "--:--:--".into());
    let shipment =
        [event.carrier.as_deref(), event.tracking_number.as_deref()].into_iter().flatten().collect::<Vec<_>>();
    format!("{time}  {:<16}  {}", event.status, shipment.join(" ")).trim_end().to_owned()
}

fn format_address(a: &api::Address) -> String {
    let mut parts = vec![a.name.as_str(), a.line1.as_str()];
    if let Some(line2) = a.line2.as_deref().filter(|l| !l.is_empty()) {
        parts.push(line2);
    }
    let city = format!("{} {}", a.postal_code, a.city);
    parts.push(city.trim());
    parts.push(&a.country);
    parts.retain(|p| !p.is_empty());
    parts.join(", ")
}

/// Digits after the decimal point of an ISO 4217 currency (2 unless listed).
pub fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// Minor units as major units with the currency: `2598, "EUR"` is `25.98 EUR`.
pub fn format_money(minor: i64, currency: &str) -> String {
    let digits = minor_unit_digits(currency);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let amount = if digits == 0 {
        format!("{sign}{abs}")
    } else {
        let scale = 10u64.pow(digits);
        format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = digits as usize)
    };
    format!("{amount} {currency}").trim_end().to_owned()
}

/// An RFC 3339 time in local time with `pattern`; unparsable text is shown as sent.
pub fn format_time(rfc3339: &str, pattern: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&Local).format(pattern).to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

fn format_duration(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The message for stderr when a request failed.
pub fn render_error(error: &api::Error) -> String {
    use api::Error as E;
    match error {
        E::Problem { status, problem } => {
            let title = problem
                .title
                .clone()
                .or_else(|| problem.kind.clone())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            let mut out = match problem.detail.as_deref().filter(|d| !d.is_empty()) {
                Some(detail) => format!("error: {title}: {detail} (HTTP {})", status.as_u16()),
                None => format!("error: {title} (HTTP {})", status.as_u16()),
            };
            for field in &problem.errors {
                out.push_str(&format!("\n  {}: {}", field.field, field.message));
            }
            out
        }
        E::OAuth { status, error } => {
            let mut out = match error.error_description.as_deref().filter(|d| !d.is_empty()) {
                Some(description) => format!("error: {}: {description} (HTTP {})", error.error, status.as_u16()),
                None => format!("error: {} (HTTP {})", error.error, status.as_u16()),
            };
            if error.error == "invalid_client" {
                out.push_str(
                    "\n  check ORDERFLOW_CLIENT_ID and ORDERFLOW_CLIENT_SECRET (or --client-id/--client-secret)",
                );
            }
            out
        }
        E::Status { status, url, body } if body.is_empty() => format!("error: {url} answered HTTP {status}"),
        E::Status { status, url, body } => format!("error: {url} answered HTTP {status}: {body}"),
        E::Transport { url, source } if source.is_connect() => format!(
            "error: cannot reach the order-service at {url}: {}\n  is it running? Set ORDERFLOW_URL or --url to where it listens",
            api::root_cause(source)
        ),
        E::Transport { url, source } if source.is_timeout() => {
            format!("error: no answer from {url} in time ({}); see --timeout", api::root_cause(source))
        }
        E::Transport { url, source } => format!("error: request to {url} failed: {}", api::root_cause(source)),
        E::InvalidResponse { url, detail } => format!("error: unexpected reply from {url}: {detail}"),
        E::StreamLost { url, attempts, last_event_id, reason } => {
            let last = last_event_id.as_deref().map(|id| format!("; last event seen: {id}")).unwrap_or_default();
            format!("error: lost the event stream {url} {attempts} times in a row ({reason}){last}")
        }
    }
}

/// A plain text table: two spaces between columns, numbers right-aligned.
struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Self {
        Self {
            headers: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .zip(&self.right)
                .map(
                    |((cell, &width), &right)| {
                        if right { format!("{cell:>width$}") } else { format!("{cell:<width$}") }
                    },
                )
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;
    use crate::api::{Error, FieldError, OAuthError, Problem};

    #[test]
    fn money_uses_the_currency_minor_unit() {
        assert_eq!(format_money(2598, "EUR"), "25.98 EUR");
        assert_eq!(format_money(5, "EUR"), "0.05 EUR");
        assert_eq!(format_money(0, "GBP"), "0.00 GBP");
        assert_eq!(format_money(100_000_000, "USD"), "1000000.00 USD");
        assert_eq!(format_money(-1299, "EUR"), "-12.99 EUR");
        assert_eq!(format_money(1500, "JPY"), "1500 JPY");
        assert_eq!(format_money(1234, "KWD"), "1.234 KWD");
        assert_eq!(format_money(i64::MIN, "EUR"), "-92233720368547758.08 EUR");
        assert_eq!(format_money(42, ""), "0.42");
    }

    #[test]
    fn problems_render_title_detail_and_every_field() {
        let error = Error::Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            problem: Problem {
                kind: Some("https://orderflow.dev/problems/validation".into()),
                title: Some("Invalid request".into()),
                detail: Some("2 fields are invalid.".into()),
                errors: vec![
                    FieldError { field: "items[0].quantity".into(), message: "must be from 1 to 999".into() },
                    FieldError { field: "shipping_address.country".into(), message: "is not a country code".into() },
                ],
            },
        };
        assert_eq!(
            render_error(&error),
            "error: Invalid request: 2 fields are invalid. (HTTP 422)\n  items[0].quantity: must be from 1 to 999\n  shipping_address.country: is not a country code"
        );
    }

    #[test]
    fn problems_without_title_or_detail_still_read() {
        let error = Error::Problem { status: StatusCode::NOT_FOUND, problem: Problem::default() };
        assert_eq!(render_error(&error), "error: Not Found (HTTP 404)");
    }

    #[test]
    fn oauth_errors_render_code_and_description() {
        let error = Error::OAuth {
            status: StatusCode::UNAUTHORIZED,
            error: OAuthError { error: "invalid_client".into(), error_description: Some("Unknown client.".into()) },
        };
        let text = render_error(&error);
        assert!(text.starts_with("error: invalid_client: Unknown client. (HTTP 401)"), "{text}");
        assert!(text.contains("ORDERFLOW_CLIENT_SECRET"));
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&[("A", false), ("N", true)]);
        t.row(vec!["long".into(), "1".into()]);
        t.row(vec!["x".into(), "100".into()]);
        assert_eq!(t.render(), "A       N\nlong    1\nx     100\n");
    }

    #[test]
    fn event_lines() {
        let event = StatusEvent {
            id: 2.into(),
            status: "SHIPPED".into(),
            at: Some("not a time".into()),
            carrier: Some("DHL".into()),
            tracking_number: Some("OF1234".into()),
        };
        assert_eq!(event_line(&event), "not a time  SHIPPED           DHL OF1234");
        let pending = StatusEvent { status: "PENDING_SHIPMENT".into(), carrier: None, tracking_number: None, ..event };
        assert_eq!(event_line(&pending), "not a time  PENDING_SHIPMENT");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(86400), "24h");
        assert_eq!(format_duration(120), "2m");
        assert_eq!(format_duration(61), "61s");
    }
}

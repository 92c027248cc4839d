//! `POST /orders`, `GET /orders/{id}`, `GET /orders`: the contract's limits,
//! error statuses and ownership rules.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{problem, spawn_app, valid_order};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_an_order_and_reads_it_back() {
    let app = spawn_app().await;
    let (token, client) = app.customer().await;
    let resp = app.post_order(&token, &valid_order(), None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/orders/{}", order["id"].as_str().unwrap()));
    assert_eq!(order["customer_id"], client.customer_id.to_string());
    assert_eq!(order["status"], "PENDING_SHIPMENT");
    assert_eq!(order["total_minor"], 2598);
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["shipment"], json!({"carrier": null, "tracking_number": null}));
    assert_eq!(order["history"].as_array().unwrap().len(), 1);
    assert_eq!(order["history"][0]["status"], "PENDING_SHIPMENT");
    let id = uuid::Uuid::parse_str(order["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7, "ids are time-ordered UUIDv7");

    let fetched: Value = app.get(&token, &location).await.json().await.unwrap();
    assert_eq!(fetched, order, "GET returns exactly what POST returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_order_is_not_found() {
    let app = spawn_app().await;
    let (alice, _) = app.customer().await;
    let (bob, _) = app.customer().await;
    let order: Value = app.post_order(&alice, &valid_order(), None).await.json().await.unwrap();
    let path = format!("/orders/{}", order["id"].as_str().unwrap());
    assert_eq!(app.get(&alice, &path).await.status(), StatusCode::OK);
    problem(app.get(&bob, &path).await, StatusCode::NOT_FOUND).await;
    problem(app.get(&bob, &format!("/orders/{}", uuid::Uuid::now_v7())).await, StatusCode::NOT_FOUND).await;
    problem(app.get(&bob, "/orders/not-a-uuid").await, StatusCode::NOT_FOUND).await;
    let list: Value = app.get(&bob, "/orders").await.json().await.unwrap();
    assert_eq!(list["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_cannot_name_the_customer() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let mut body = valid_order();
    body["customer_id"] = json!(uuid::Uuid::now_v7());
    let p = problem(app.post_order(&token, &body, None).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["field"], "customer_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_callers_orders_newest_first_in_pages() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = valid_order();
        body["items"][0]["quantity"] = json!(i + 1); // distinct bodies: no double-submit folding
        let order: Value = app.post_order(&token, &body, None).await.json().await.unwrap();
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/orders?limit=2".to_owned();
    loop {
        let page: Value = app.get(&token, &path).await.json().await.unwrap();
        seen.extend(page["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/orders?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    for bad in ["/orders?limit=0", "/orders?limit=101", "/orders?limit=x", "/orders?cursor=%%%", "/orders?colour=red"] {
        problem(app.get(&token, bad).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_bad_transport_with_the_right_status() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let post = || app.http.post(app.url("/orders")).bearer_auth(&token);

    problem(
        post().header("content-type", "application/json").body("{not json").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        post().header("content-type", "text/plain").body(valid_order().to_string()).send().await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(post().body(valid_order().to_string()).send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let mut huge = valid_order();
    huge["shipping_address"]["name"] = json!("x".repeat(70 * 1024));
    problem(post().json(&huge).send().await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE).await;
    // An oversized body sent without Content-Length (chunked) is refused too.
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(huge.to_string())]);
    problem(
        post()
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    problem(app.post_order(&token, &valid_order(), Some("")).await, StatusCode::BAD_REQUEST).await;
    problem(app.post_order(&token, &valid_order(), Some(&"k".repeat(256))).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0, "nothing was created");
}

/// One request per limit in API.md, each naming the bad field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforces_every_field_limit() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let item = |sku: Value, quantity: Value, price: Value| json!([{"sku": sku, "quantity": quantity, "unit_price_minor": price}]);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("items", json!([]), "items"),
        ("items", Value::Array(vec![json!({"sku": "A", "quantity": 1, "unit_price_minor": 1}); 101]), "items"),
        ("items", item(json!(""), json!(1), json!(1)), "items[0].sku"),
        ("items", item(json!("S".repeat(65)), json!(1), json!(1)), "items[0].sku"),
        ("items", item(json!("SKU 1"), json!(1), json!(1)), "items[0].sku"),
        ("items", item(json!("SKU-1"), json!(0), json!(1)), "items[0].quantity"),
        ("items", item(json!("SKU-1"), json!(1000), json!(1)), "items[0].quantity"),
        ("items", item(json!("SKU-1"), json!(1.5), json!(1)), "items[0].quantity"),
        ("items", item(json!("SKU-1"), json!(1), json!(-1)), "items[0].unit_price_minor"),
        ("items", item(json!("SKU-1"), json!(1), json!(100_000_001)), "items[0].unit_price_minor"),
        ("currency", json!("EURO"), "currency"),
        ("currency", json!("XYZ"), "currency"),
        ("currency", json!(null), "currency"),
    ];
    for (key, value, field) in cases {
        let mut body = valid_order();
        body[key] = value;
        let p = problem(app.post_order(&token, &body, None).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, [field], "{key} case");
        assert!(p["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let address_cases: Vec<(&str, Value)> = vec![
        ("name", json!("")),
        ("name", json!("   ")),
        ("line1", json!("x".repeat(201))),
        ("city", json!(null)),
        ("postal_code", json!(12345)),
        ("country", json!("UK")),
        ("country", json!("gb")),
        ("line2", json!("")),
        ("planet", json!("Earth")),
    ];
    for (key, value) in address_cases {
        let mut body = valid_order();
        body["shipping_address"][key] = value;
        let p = problem(app.post_order(&token, &body, None).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(p["errors"][0]["field"], format!("shipping_address.{key}"));
    }
    // At the limits, everything is accepted.
    let mut body = valid_order();
    body["items"] = Value::Array(
        (0..100)
            .map(|i| json!({"sku": format!("{i:0>64}"), "quantity": 999, "unit_price_minor": 100_000_000}))
            .collect(),
    );
    body["shipping_address"]["line1"] = json!("x".repeat(200));
    body["shipping_address"]["line2"] = json!("Flat 1");
    let resp = app.post_order(&token, &body, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["total_minor"], 100 * 999 * 100_000_000_i64);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}

//! `wrk` and its Lua request scripts.

use std::process::Command;

pub(crate) struct Wrk {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) non_2xx: u64,
}

pub(crate) fn parse_ms(v: &str) -> f64 {
    let v = v.trim();
    if let Some(x) = v.strip_suffix("us") {
        x.parse::<f64>().unwrap_or(f64::NAN) / 1000.0
    } else if let Some(x) = v.strip_suffix("ms") {
        x.parse().unwrap_or(f64::NAN)
    } else if let Some(x) = v.strip_suffix('s') {
        x.parse::<f64>().unwrap_or(f64::NAN) * 1000.0
    } else {
        f64::NAN
    }
}

pub(crate) fn wrk(seconds: u64, connections: u32, url: &str, script: &str) -> Wrk {
    let file = std::env::temp_dir().join(format!("inventory-wrk-{}.lua", std::process::id()));
    std::fs::write(&file, script).unwrap();
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&file)
        .arg(url)
        .output()
        .expect("wrk installed (benches/load.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let find = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim_start()[prefix.len()..].trim().to_owned())
    };
    Wrk {
        rps: find("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN),
        p50_ms: find("50%").map(|v| parse_ms(&v)).unwrap_or(f64::NAN),
        p99_ms: find("99%").map(|v| parse_ms(&v)).unwrap_or(f64::NAN),
        non_2xx: find("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

pub(crate) fn lua_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn order_script(tokens: &[String], products: &[String]) -> String {
    format!(
        r#"local tokens = {{ {} }}
local products = {{ {} }}
local n = 0
request = function()
  n = n + 1
  local t = tokens[(n % #tokens) + 1]
  local p = products[(n % #products) + 1]
  return wrk.format("POST", "/orders/place", {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. t}}, '{{"product_id":"' .. p .. '"}}')
end
"#,
        lua_list(tokens),
        lua_list(products)
    )
}

/// Baskets of five lines, one unit each of five consecutive products of `products`.
pub(crate) fn basket_script(tokens: &[String], products: &[String]) -> String {
    format!(
        r#"local tokens = {{ {} }}
local products = {{ {} }}
local n = 0
request = function()
  n = n + 1
  local t = tokens[(n % #tokens) + 1]
  local lines = {{}}
  for i = 0, 4 do
    local p = products[((n + i) % #products) + 1]
    lines[#lines + 1] = '{{"product_id":"' .. p .. '","quantity":1}}'
  end
  return wrk.format("POST", "/orders", {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. t}}, '{{"lines":[' .. table.concat(lines, ",") .. ']}}')
end
"#,
        lua_list(tokens),
        lua_list(products)
    )
}

pub(crate) fn login_script(emails: &[String]) -> String {
    format!(
        r#"local emails = {{ {} }}
local n = 0
request = function()
  n = n + 1
  local e = emails[(n % #emails) + 1]
  return wrk.format("POST", "/auth/login", {{["Content-Type"] = "application/json"}}, '{{"email":"' .. e .. '","password":"load-test-password"}}')
end
"#,
        lua_list(emails)
    )
}

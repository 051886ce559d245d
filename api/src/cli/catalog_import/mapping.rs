//! Turning the servers of an MCP client's configuration into catalog entries: commands
//! become `process` entries, URLs `remote` ones. Nothing secret is carried over: a value
//! that looks like a credential becomes a secret key each server brings, and is named in
//! the report instead.

use serde_json::{json, Map, Value};

/// The configuration files read, by where they keep their servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `mcpServers`: Claude Desktop, Claude Code (`.mcp.json`), Cursor.
    McpServers,
    /// `servers`: VS Code (`.vscode/mcp.json`).
    VsCode,
}

impl ConfigFormat {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::McpServers => "mcpServers (Claude Desktop, Claude Code, Cursor)",
            Self::VsCode => "servers (VS Code)",
        }
    }
}

/// One server of the file, as an entry or as the reason it is not one.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// Its name in the file.
    pub name: String,
    /// The entry to register, or why there is none.
    pub entry: Result<Value, String>,
    /// What a person must know (values not carried over).
    pub notes: Vec<String>,
}

/// Why the file cannot be read as a client configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON without a server list.
    #[error(
        "no `mcpServers` (Claude Desktop, Claude Code, Cursor) or `servers` (VS Code) object in it"
    )]
    NoServers,
}

/// Every server of the configuration `text`, in the file's order, with its format.
pub fn map_config(text: &str) -> Result<(ConfigFormat, Vec<Mapped>), ConfigError> {
    let document: Value = serde_json::from_str(&without_comments(text))?;
    let (format, servers) = match (document.get("mcpServers"), document.get("servers")) {
        (Some(Value::Object(servers)), _) => (ConfigFormat::McpServers, servers),
        (_, Some(Value::Object(servers))) => (ConfigFormat::VsCode, servers),
        _ => return Err(ConfigError::NoServers),
    };
    let mapped = servers
        .iter()
        .map(|(name, server)| map_server(name, server))
        .collect();
    Ok((format, mapped))
}

/// VS Code's `mcp.json` is JSON with comments: whole-line `//` comments are dropped
/// (a `//` inside a value, such as a URL, is left alone).
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn map_server(name: &str, server: &Value) -> Mapped {
    let mut notes = Vec::new();
    let entry = match server {
        Value::Object(server) => entry_of(name, server, &mut notes),
        _ => Err("is not an object".to_owned()),
    };
    Mapped {
        name: name.to_owned(),
        entry,
        notes,
    }
}

fn entry_of(
    name: &str,
    server: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<Value, String> {
    let entry_name = entry_name(name);
    let kind = server.get("type").and_then(Value::as_str);
    if kind == Some("sse") {
        return Err(
            "uses the SSE transport, which Berth does not speak (only Streamable HTTP)".into(),
        );
    }
    let description = format!("imported from an MCP client configuration (`{name}`)");
    if let Some(command) = server.get("command").and_then(Value::as_str) {
        let args: Vec<String> = match server.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(args)) => args
                .iter()
                .map(|a| {
                    a.as_str()
                        .map(str::to_owned)
                        .ok_or("`args` holds a value that is not text")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("`args` is not a list".into()),
        };
        if server.contains_key("envFile") {
            notes
                .push("its `envFile` is not read: give those values when creating a server".into());
        }
        if let Some(at) = credential_argument(&args) {
            return Err(format!(
                "its argument {} seems to carry a credential: register it by hand, with the \
                 credential as a secret key",
                at + 1
            ));
        }
        let schema: Vec<Value> = match server.get("env") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(env)) => env.keys().map(|key| config_key(key)).collect(),
            Some(_) => return Err("`env` is not an object".into()),
        };
        if !schema.is_empty() {
            let keys: Vec<&str> = schema.iter().filter_map(|k| k["key"].as_str()).collect();
            notes.push(format!(
                "the values of {} were not imported: each server gives its own (those whose \
                 name says they hold a credential as secrets)",
                keys.join(", ")
            ));
        }
        let runtime = json!({"type": "process", "command": command, "args": args});
        return Ok(entry(&entry_name, &description, "stdio", runtime, schema));
    }
    if let Some(url) = server.get("url").and_then(Value::as_str) {
        if carries_credential(url) {
            return Err(
                "its URL carries a credential: register it by hand, with the credential in \
                 `auth` as a secret key"
                    .into(),
            );
        }
        let (auth, schema) = match server.get("headers") {
            None | Some(Value::Null) => (json!({"type": "none"}), Vec::new()),
            Some(Value::Object(headers)) => remote_auth(&entry_name, headers, notes)?,
            Some(_) => return Err("`headers` is not an object".into()),
        };
        let runtime = json!({"type": "remote", "url": url, "auth": auth});
        return Ok(entry(&entry_name, &description, "http", runtime, schema));
    }
    Err("has neither a `command` nor a `url`".into())
}

/// The body of `POST /api/v1/catalog`.
fn entry(
    name: &str,
    description: &str,
    transport: &str,
    runtime: Value,
    schema: Vec<Value>,
) -> Value {
    json!({
        "name": name,
        "description": description,
        "transport": transport,
        "runtime": runtime,
        "config_schema": schema,
    })
}

/// A catalog entry name from a client's server name: lower case, with `-` for anything
/// else than letters, digits, `-` and `_`.
fn entry_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "imported".into()
    } else {
        trimmed.chars().take(64).collect()
    }
}

/// Whether a name (of a variable, a flag, a query parameter) says it holds a credential.
fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    let within = [
        "TOKEN",
        "SECRET",
        "PASSW",
        "PASS",
        "KEY",
        "CREDENTIAL",
        "AUTH",
        "DSN",
        "WEBHOOK",
        "PRIVATE",
        "COOKIE",
        "SESSION",
        "SIGNATURE",
    ];
    within.iter().any(|word| name.contains(word))
        || name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|part| part == "PAT" || part == "SIG")
}

/// Whether `text` carries a credential: a URL with a user or password, or with a query
/// parameter whose name says it holds one.
fn carries_credential(text: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(text) else {
        return false;
    };
    !url.username().is_empty()
        || url.password().is_some()
        || url.query_pairs().any(|(name, _)| looks_secret(&name))
}

/// The first argument that gives a credential: a URL carrying one, `--flag=value` or
/// `--flag value` whose flag says it holds one.
fn credential_argument(args: &[String]) -> Option<usize> {
    args.iter().enumerate().find_map(|(i, arg)| {
        let flag = arg.strip_prefix('-').map(|f| f.trim_start_matches('-'));
        let given = match flag.map(|f| f.split_once('=')) {
            Some(Some((name, value))) => looks_secret(name) && !value.is_empty(),
            Some(None) => {
                flag.is_some_and(looks_secret)
                    && args.get(i + 1).is_some_and(|v| !v.starts_with('-'))
            }
            None => false,
        };
        (given || carries_credential(arg)).then_some(i)
    })
}

/// The config key of one environment variable. No value of the file is carried over (a
/// value may be a credential whatever its name): each key is required, a secret when its
/// name says it holds one.
fn config_key(key: &str) -> Value {
    json!({"key": key, "required": true, "secret": looks_secret(key)})
}

/// The credential of a remote server: one `Authorization: Bearer` header or one other
/// header, each a secret key each server brings.
fn remote_auth(
    entry_name: &str,
    headers: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<(Value, Vec<Value>), String> {
    let mut headers = headers.iter();
    let Some((header, value)) = headers.next() else {
        return Ok((json!({"type": "none"}), Vec::new()));
    };
    if headers.next().is_some() {
        return Err("sends more than one header; Berth sends one credential header".into());
    }
    let key = format!(
        "{}_{}",
        entry_name,
        if header.eq_ignore_ascii_case("authorization") {
            "TOKEN"
        } else {
            header
        }
    )
    .to_ascii_uppercase()
    .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let key = if key.starts_with(|c: char| c.is_ascii_digit()) {
        format!("K_{key}")
    } else {
        key
    };
    let value = value.as_str().unwrap_or_default();
    let auth = if header.eq_ignore_ascii_case("authorization") {
        if !value
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("bearer ")
        {
            return Err("its `Authorization` header is not a bearer token".into());
        }
        json!({"type": "bearer", "secret": key})
    } else {
        json!({"type": "header", "name": header, "secret": key})
    };
    notes.push(format!(
        "its `{header}` header is the secret `{key}` each server brings: its value in the file was not imported"
    ));
    Ok((
        auth,
        vec![json!({"key": key, "required": true, "secret": true})],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAUDE: &str = r#"{
      "mcpServers": {
        "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
        "GitHub Tools": {"command": "docker", "args": ["run", "-i", "ghcr.io/github/github-mcp-server"],
                         "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_secret", "GITHUB_HOST": "github.com",
                                 "LOG_LEVEL": "${env:LOG_LEVEL}"}},
        "tracker": {"url": "https://mcp.tracker.example/mcp", "headers": {"Authorization": "Bearer abc"}},
        "old": {"type": "sse", "url": "https://old.example/sse"},
        "nothing": {}
      }
    }"#;

    /// Server `name` as mapped (the file's order is kept only where serde_json keeps
    /// it, so servers are looked up by name).
    fn of<'a>(mapped: &'a [Mapped], name: &str) -> &'a Mapped {
        mapped
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no `{name}` in {mapped:?}"))
    }

    fn entry<'a>(mapped: &'a [Mapped], name: &str) -> &'a Value {
        of(mapped, name).entry.as_ref().expect("an entry")
    }

    #[test]
    fn commands_become_process_entries_and_urls_remote_ones_with_no_secret_carried_over() {
        let (format, mapped) = map_config(CLAUDE).expect("a configuration");
        assert_eq!(format, ConfigFormat::McpServers);
        assert_eq!(mapped.len(), 5);

        let files = entry(&mapped, "filesystem");
        assert_eq!(files["runtime"]["type"], "process");
        assert_eq!(files["runtime"]["args"][2], "/tmp");
        assert_eq!(files["transport"], "stdio");

        let github = entry(&mapped, "GitHub Tools");
        assert_eq!(github["name"], "github-tools");
        let key = |name: &str| {
            github["config_schema"]
                .as_array()
                .and_then(|keys| keys.iter().find(|k| k["key"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("no {name} in {github}"))
        };
        assert_eq!(key("GITHUB_PERSONAL_ACCESS_TOKEN")["secret"], true);
        assert_eq!(key("GITHUB_HOST")["secret"], false);
        // No value of the file is carried over, secret-looking or not.
        for name in ["GITHUB_HOST", "LOG_LEVEL", "GITHUB_PERSONAL_ACCESS_TOKEN"] {
            assert_eq!(key(name)["required"], true);
            assert_eq!(key(name)["default"], Value::Null);
        }
        assert!(!github.to_string().contains("ghp_secret"));
        assert!(!github.to_string().contains("github.com\""));
        let notes = &of(&mapped, "GitHub Tools").notes;
        assert!(
            notes[0].contains("GITHUB_PERSONAL_ACCESS_TOKEN"),
            "{notes:?}"
        );

        let tracker = entry(&mapped, "tracker");
        assert_eq!(tracker["runtime"]["type"], "remote");
        assert_eq!(tracker["transport"], "http");
        assert_eq!(tracker["runtime"]["auth"]["type"], "bearer");
        assert_eq!(tracker["runtime"]["auth"]["secret"], "TRACKER_TOKEN");
        assert!(!tracker.to_string().contains("abc"));

        let why = |name: &str| of(&mapped, name).entry.clone().expect_err("no entry");
        assert!(why("old").contains("SSE"));
        assert!(why("nothing").contains("neither"));
    }

    #[test]
    fn vs_code_servers_with_comments_are_read_and_what_is_not_a_configuration_is_refused() {
        let vscode = r#"{
          // the servers
          "servers": {"time": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"]},
                      "api": {"type": "http", "url": "https://api.example/mcp", "headers": {"X-Api-Key": "k"}}},
          "inputs": []
        }"#;
        let (format, mapped) = map_config(vscode).expect("a configuration");
        assert_eq!(format, ConfigFormat::VsCode);
        assert_eq!(entry(&mapped, "time")["runtime"]["command"], "uvx");
        let api = entry(&mapped, "api");
        assert_eq!(api["runtime"]["auth"]["type"], "header");
        assert_eq!(api["runtime"]["auth"]["name"], "X-Api-Key");
        assert_eq!(api["config_schema"][0]["key"], "API_X_API_KEY");
        assert!(matches!(map_config("{}"), Err(ConfigError::NoServers)));
        assert!(matches!(map_config("not json"), Err(ConfigError::Json(_))));
        let bad = r#"{"mcpServers": {"a": {"command": "x", "args": "not a list"},
                                       "b": {"url": "https://b", "headers": {"A": "1", "B": "2"}}}}"#;
        let (_, mapped) = map_config(bad).expect("a configuration");
        assert!(mapped.iter().all(|m| m.entry.is_err()), "{mapped:?}");
    }

    #[test]
    fn a_server_whose_arguments_or_url_carry_a_credential_is_not_imported() {
        let carrying = r#"{"mcpServers": {
          "pg": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-postgres", "postgresql://app:hunter2@db/app"]},
          "flag": {"command": "tool", "args": ["--api-key=abc123"]},
          "flag2": {"command": "tool", "args": ["--token", "abc123"]},
          "query": {"url": "https://mcp.example/mcp?api_key=abc123"},
          "user": {"url": "https://me:pw@mcp.example/mcp"},
          "plain": {"command": "tool", "args": ["--verbose", "--port", "8080", "https://example.com/docs"]},
          "odd.header": {"url": "https://mcp.example/mcp", "headers": {"X.Api.Key": "k"}}
        }}"#;
        let (_, mapped) = map_config(carrying).expect("a configuration");
        for name in ["pg", "flag", "flag2", "query", "user"] {
            let why = of(&mapped, name).entry.clone().expect_err(name);
            assert!(why.contains("credential"), "{name}: {why}");
        }
        assert!(of(&mapped, "plain").entry.is_ok());
        let odd = entry(&mapped, "odd.header");
        assert_eq!(odd["config_schema"][0]["key"], "ODD_HEADER_X_API_KEY");
        // Nowhere: not in an entry, a reason or a note.
        let said = format!("{mapped:?}");
        for secret in ["hunter2", "abc123", ":pw@"] {
            assert!(!said.contains(secret), "{secret} in {said}");
        }
    }
}

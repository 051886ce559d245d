//! The catalog projection: entries registered, updated and removed; filters; tools.

use berth_domain::server::{ServerCommand, Tool};
use berth_projections::{get_catalog_entry, list_catalog, CatalogFilter};
use serde_json::json;

use crate::kit::{definition, http_definition, meta, page, system, Harness};

fn names(items: &[berth_projections::CatalogEntryView]) -> Vec<&str> {
    items.iter().map(|e| e.name.as_str()).collect()
}

#[tokio::test]
async fn entries_follow_registration_update_and_removal() {
    let h = Harness::new().await;
    let id = h
        .register("ann", definition("github", "Issues and pull requests"))
        .await;
    h.catch_up().await;

    let client = h.client().await;
    let entry = get_catalog_entry(&client, id)
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(entry.name, "github");
    assert_eq!(entry.description, "Issues and pull requests");
    assert_eq!(entry.kind, "custom");
    assert_eq!(entry.transport, "stdio");
    assert_eq!(entry.owner.as_deref(), Some("user:ann"));
    assert_eq!(entry.version, 1);
    assert_eq!(entry.runtime["type"], "docker");
    assert_eq!(entry.runtime["image"], "ghcr.io/berth/fixture:1");
    assert_eq!(entry.config_schema[2]["key"], "TOKEN");
    assert_eq!(entry.config_schema[2]["secret"], true);
    assert_eq!(entry.resources, json!({ "memory_mb": 256, "cpus": 0.5 }));
    assert_eq!(entry.tools, json!([]));
    assert_eq!(entry.created_at, entry.updated_at);

    let mut changed = definition("github-enterprise", "Issues, PRs and more");
    changed.transport = berth_domain::catalog::Transport::Stdio;
    h.bus
        .update_catalog_entry(&meta("ann"), id.into(), changed)
        .await
        .unwrap();
    h.catch_up().await;
    let updated = get_catalog_entry(&client, id)
        .await
        .unwrap()
        .expect("still there");
    assert_eq!(updated.name, "github-enterprise");
    assert_eq!(updated.description, "Issues, PRs and more");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_at, entry.created_at);
    assert!(updated.updated_at >= entry.updated_at);
    assert!(updated.position > entry.position);

    h.bus
        .remove_catalog_entry(&meta("ann"), id.into())
        .await
        .unwrap();
    h.catch_up().await;
    assert!(get_catalog_entry(&client, id).await.unwrap().is_none());
    let all = list_catalog(&client, &CatalogFilter::default(), page(1, 50))
        .await
        .unwrap();
    assert_eq!(all.total, 0);
    assert!(all.items.is_empty());
}

#[tokio::test]
async fn lists_filter_by_text_kind_and_transport_and_page() {
    let h = Harness::new().await;
    h.register("ann", definition("github", "Issues and pull requests"))
        .await;
    h.register(
        "ann",
        definition("gitlab", "Merge requests, 100% self-hosted"),
    )
    .await;
    h.register("bob", http_definition("fetch", "Fetches web pages"))
        .await;
    h.register("bob", http_definition("a_b", "underscore"))
        .await;
    h.register("bob", http_definition("axb", "1000 self-hosted pages"))
        .await;
    h.bus
        .sync_predefined_catalog(
            &system(None, None),
            vec![definition("filesystem", "Reads and writes files")],
        )
        .await
        .unwrap();
    h.catch_up().await;
    let client = h.client().await;
    let list = |filter: CatalogFilter| {
        let client = &client;
        async move { list_catalog(client, &filter, page(1, 50)).await.unwrap() }
    };

    let all = list(CatalogFilter::default()).await;
    assert_eq!(
        names(&all.items),
        ["a_b", "axb", "fetch", "filesystem", "github", "gitlab"]
    );
    assert_eq!(all.total, 6);

    let git = list(CatalogFilter {
        q: Some("GIT".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&git.items), ["github", "gitlab"]);

    let by_description = list(CatalogFilter {
        q: Some("web PAGES".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&by_description.items), ["fetch"]);

    // `%` and `_` in the query are literal characters, not wildcards.
    let percent = list(CatalogFilter {
        q: Some("0% self".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&percent.items), ["gitlab"]);
    let underscore = list(CatalogFilter {
        q: Some("a_b".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&underscore.items), ["a_b"]);

    let http = list(CatalogFilter {
        transport: Some("http".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&http.items), ["a_b", "axb", "fetch"]);

    let predefined = list(CatalogFilter {
        kind: Some("predefined".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&predefined.items), ["filesystem"]);
    assert_eq!(predefined.items[0].owner, None);

    let combined = list(CatalogFilter {
        q: Some("self-hosted".into()),
        transport: Some("stdio".into()),
        kind: Some("custom".into()),
        visible_to: None,
    })
    .await;
    assert_eq!(names(&combined.items), ["gitlab"]);

    let second = list_catalog(&client, &CatalogFilter::default(), page(2, 4))
        .await
        .unwrap();
    assert_eq!(names(&second.items), ["github", "gitlab"]);
    assert_eq!((second.total, second.page, second.page_size), (6, 2, 4));
    let beyond = list_catalog(&client, &CatalogFilter::default(), page(9, 4))
        .await
        .unwrap();
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 6);
}

#[tokio::test]
async fn entries_show_the_union_of_tools_their_servers_discovered() {
    let h = Harness::new().await;
    let id = h.register("ann", definition("github", "")).await;
    let other = h.register("ann", definition("other", "")).await;
    let secrets = [("TOKEN", "t")];
    let (one, _) = h
        .create_server("ann", id, "one", &[("ORG", "a")], &secrets)
        .await;
    let (two, _) = h
        .create_server("ann", id, "two", &[("ORG", "b")], &secrets)
        .await;
    let (three, _) = h
        .create_server("ann", other, "three", &[("ORG", "c")], &secrets)
        .await;
    let tool = |name: &str, description: Option<&str>| Tool {
        name: name.into(),
        description: description.map(Into::into),
        input_schema: None,
    };
    let bus = &h.bus;
    let record = move |server: uuid::Uuid, tools| async move {
        let command = ServerCommand::RecordTools { tools };
        bus.server(server.into(), command, &system(None, None))
            .await
    };
    record(one, vec![tool("search", Some("old")), tool("issues", None)])
        .await
        .unwrap();
    record(
        two,
        vec![tool("search", Some("new")), tool("commits", None)],
    )
    .await
    .unwrap();
    record(three, vec![tool("elsewhere", None)]).await.unwrap();
    h.catch_up().await;

    let client = h.client().await;
    let entry = get_catalog_entry(&client, id).await.unwrap().unwrap();
    assert_eq!(
        entry.tools,
        json!([
            { "name": "commits" },
            { "name": "issues" },
            { "name": "search", "description": "new" },
        ])
    );

    // A server's newer discovery replaces its older one.
    record(one, vec![tool("search", Some("newest"))])
        .await
        .unwrap();
    h.catch_up().await;
    let entry = get_catalog_entry(&client, id).await.unwrap().unwrap();
    assert_eq!(
        entry.tools,
        json!([{ "name": "commits" }, { "name": "search", "description": "newest" }])
    );
    let other = get_catalog_entry(&client, other).await.unwrap().unwrap();
    assert_eq!(other.tools, json!([{ "name": "elsewhere" }]));
}

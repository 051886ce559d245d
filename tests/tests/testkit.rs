//! The test kit itself: isolated, migrated databases that go away with the test.

use berth_tests::test_database;

async fn has_events_table(db: &berth_infrastructure::db::Database) -> bool {
    let client = db.connect().await.expect("connect to the test database");
    client
        .query_one("SELECT to_regclass('public.events') IS NOT NULL", &[])
        .await
        .expect("query")
        .get(0)
}

async fn database_exists(admin: &berth_tests::TestDatabase, name: &str) -> bool {
    let client = admin.database().connect().await.expect("connect");
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .await
        .expect("query")
        .get(0)
}

#[tokio::test]
async fn each_test_gets_its_own_migrated_database_dropped_afterwards() {
    let first = test_database().await;
    let second = test_database().await;
    assert_ne!(first.name(), second.name());
    assert!(has_events_table(&first.database()).await);
    assert!(has_events_table(&second.database()).await);
    // The clone carries refinery's history: migrating it again finds nothing to do.
    let applied = berth_infrastructure::migrations::run(&first.database())
        .await
        .expect("migrations on a clone of the template");
    assert_eq!(applied, 0);

    // Isolated: a table made in one is not in the other.
    first
        .database()
        .connect()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE only_in_first (id int)")
        .await
        .unwrap();
    let seen: bool = second
        .database()
        .connect()
        .await
        .unwrap()
        .query_one(
            "SELECT to_regclass('public.only_in_first') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!seen);

    let gone = first.name().to_owned();
    assert!(database_exists(&second, &gone).await);
    drop(first);
    assert!(!database_exists(&second, &gone).await);
}

#[tokio::test]
async fn the_url_reaches_the_same_database() {
    let db = test_database().await;
    let again = berth_infrastructure::db::Database::from_url(&db.url()).expect("url parses");
    let client = again.connect().await.expect("connect through the url");
    let name: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, db.name());
}

use chrono::{Duration, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;

type Given = TestFramework<User>;

fn created() -> UserEvent {
    UserEvent::Created {
        name: "ann".into(),
        role: Role::Operator,
        owner: "user:ann".into(),
    }
}

fn key_created(id: Uuid, expires_in: Option<Duration>) -> UserEvent {
    UserEvent::KeyCreated {
        key_id: id,
        name: "ci".into(),
        prefix: "berth_abcdefgh".into(),
        digest: KeyDigest::hmac_sha256("00".into()),
        expires_at: expires_in.map(|d| Utc::now() + d),
        profiles: Default::default(),
    }
}

fn issue(id: Uuid) -> UserCommand {
    UserCommand::IssueToken {
        key_id: id,
        token_id: Uuid::new_v4(),
        expires_at: Utc::now() + Duration::minutes(15),
        now: Utc::now(),
    }
}

#[test]
fn a_name_is_taken_once_and_must_be_valid() {
    Given::with(())
        .given(vec![created()])
        .when(UserCommand::Create {
            name: "ann".into(),
            role: Role::Viewer,
        })
        .then_expect_error(UserError::AlreadyExists);
    let refused = Given::with(())
        .given_no_previous_events()
        .when(UserCommand::Create {
            name: "ann smith; rm".into(),
            role: Role::Viewer,
        })
        .inspect_result();
    assert!(matches!(refused, Err(UserError::Invalid(f)) if f[0].field == "name"));
}

#[test]
fn roles_are_ordered_by_what_they_allow() {
    assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert!("root".parse::<Role>().is_err());
}

#[test]
fn keys_need_a_live_user_and_a_future_expiry() {
    let id = Uuid::new_v4();
    let now = Utc::now();
    let command = |expires_at| UserCommand::CreateKey {
        key_id: id,
        name: "ci".into(),
        prefix: "berth_abcdefgh".into(),
        digest: KeyDigest::hmac_sha256("00".into()),
        expires_at,
        profiles: Default::default(),
        now,
    };
    Given::with(())
        .given(vec![created(), UserEvent::Disabled])
        .when(command(None))
        .then_expect_error(UserError::Disabled);
    Given::with(())
        .given_no_previous_events()
        .when(command(None))
        .then_expect_error(UserError::NotFound);
    let refused = Given::with(())
        .given(vec![created()])
        .when(command(Some(now - Duration::seconds(1))))
        .inspect_result();
    assert!(matches!(refused, Err(UserError::Invalid(f)) if f[0].field == "expires_at"));
    Given::with(())
        .given(vec![created(), key_created(id, None)])
        .when(command(None))
        .then_expect_error(UserError::KeyExists);
}

fn open_session(id: Uuid) -> UserCommand {
    UserCommand::OpenConsoleSession {
        key_id: id,
        session_id: Uuid::new_v4(),
        expires_at: Utc::now() + Duration::hours(12),
        now: Utc::now(),
    }
}

#[test]
fn tokens_and_console_sessions_are_issued_only_for_live_unexpired_unrevoked_keys() {
    let id = Uuid::new_v4();
    for command in [issue, open_session] {
        let issued = Given::with(())
            .given(vec![created(), key_created(id, Some(Duration::hours(1)))])
            .when(command(id))
            .inspect_result();
        assert!(matches!(
            issued.as_deref(),
            Ok([UserEvent::TokenIssued { key_id, .. } | UserEvent::ConsoleSessionOpened { key_id, .. }])
                if *key_id == id
        ));
        Given::with(())
            .given(vec![
                created(),
                key_created(id, Some(Duration::seconds(-1))),
            ])
            .when(command(id))
            .then_expect_error(UserError::KeyExpired);
        Given::with(())
            .given(vec![
                created(),
                key_created(id, None),
                UserEvent::KeyRevoked { key_id: id },
            ])
            .when(command(id))
            .then_expect_error(UserError::KeyRevoked);
        Given::with(())
            .given(vec![created(), key_created(id, None), UserEvent::Disabled])
            .when(command(id))
            .then_expect_error(UserError::Disabled);
        Given::with(())
            .given(vec![created()])
            .when(command(id))
            .then_expect_error(UserError::KeyNotFound);
    }
}

#[test]
fn a_console_session_of_an_existing_user_may_always_be_ended() {
    let session_id = Uuid::new_v4();
    Given::with(())
        .given(vec![created(), UserEvent::Disabled])
        .when(UserCommand::EndConsoleSession { session_id })
        .then_expect_events(vec![UserEvent::ConsoleSessionEnded { session_id }]);
    Given::with(())
        .given_no_previous_events()
        .when(UserCommand::EndConsoleSession { session_id })
        .then_expect_error(UserError::NotFound);
}

#[test]
fn revoking_twice_and_forgetting_twice_are_refused() {
    let id = Uuid::new_v4();
    Given::with(())
        .given(vec![created(), key_created(id, None)])
        .when(UserCommand::RevokeKey { key_id: id })
        .then_expect_events(vec![UserEvent::KeyRevoked { key_id: id }]);
    Given::with(())
        .given(vec![
            created(),
            key_created(id, None),
            UserEvent::KeyRevoked { key_id: id },
        ])
        .when(UserCommand::RevokeKey { key_id: id })
        .then_expect_error(UserError::KeyRevoked);
    Given::with(())
        .given(vec![created()])
        .when(UserCommand::Forget {
            another_active_admin: false,
        })
        .then_expect_events(vec![UserEvent::Forgotten]);
    Given::with(())
        .given(vec![created(), UserEvent::Forgotten])
        .when(UserCommand::Forget {
            another_active_admin: false,
        })
        .then_expect_error(UserError::AlreadyForgotten);
    Given::with(())
        .given(vec![created(), UserEvent::Forgotten])
        .when(UserCommand::Disable {
            another_active_admin: false,
        })
        .then_expect_error(UserError::Disabled);
}

#[test]
fn user_ids_follow_from_names() {
    assert_eq!(user_id("ann"), user_id("ann"));
    assert_ne!(user_id("ann"), user_id("bob"));
    assert_eq!(owner_of("ann"), "user:ann");
}

fn admin_created() -> UserEvent {
    UserEvent::Created {
        name: "root".into(),
        role: Role::Admin,
        owner: "user:root".into(),
    }
}

#[test]
fn the_last_active_administrator_can_be_neither_disabled_nor_forgotten() {
    for command in [
        UserCommand::Disable {
            another_active_admin: false,
        },
        UserCommand::Forget {
            another_active_admin: false,
        },
    ] {
        Given::with(())
            .given(vec![admin_created()])
            .when(command)
            .then_expect_error(UserError::LastAdministrator);
    }
    Given::with(())
        .given(vec![admin_created()])
        .when(UserCommand::Disable {
            another_active_admin: true,
        })
        .then_expect_events(vec![UserEvent::Disabled]);
    // A disabled administrator is no longer one that counts.
    Given::with(())
        .given(vec![admin_created(), UserEvent::Disabled])
        .when(UserCommand::Forget {
            another_active_admin: false,
        })
        .then_expect_events(vec![UserEvent::Forgotten]);
}

#[test]
fn a_disabled_user_can_be_enabled_again_unless_forgotten() {
    Given::with(())
        .given(vec![created(), UserEvent::Disabled])
        .when(UserCommand::Enable)
        .then_expect_events(vec![UserEvent::Enabled]);
    Given::with(())
        .given(vec![created()])
        .when(UserCommand::Enable)
        .then_expect_error(UserError::AlreadyEnabled);
    Given::with(())
        .given(vec![created(), UserEvent::Forgotten])
        .when(UserCommand::Enable)
        .then_expect_error(UserError::Forgotten);
    Given::with(())
        .given(vec![])
        .when(UserCommand::Enable)
        .then_expect_error(UserError::NotFound);
}

//! Users: unique addresses, lookups, roles, token versions.

use chrono::Utc;
use uuid::Uuid;

use crate::domain::*;
use crate::error::Error;

use super::*;

/// A second registration of an email is a conflict and never replaces the stored password;
/// the uniqueness holds for concurrent registrations too.
pub async fn users_email_is_unique_and_password_kept(store: TestStore) {
    let first = user(&store, "ann@example.com").await;
    let mut second = first.clone();
    second.id = Uuid::now_v7();
    second.password_hash = "$argon2id$other".into();
    let err = store.create_user(&second).await.unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists(_)),
        "a second user with a taken email must be AlreadyExists, got {err:?}"
    );
    let stored = store
        .find_user_by_email(&first.email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash, first.password_hash);
    assert_eq!(stored.id, first.id);

    let email = Email::parse("race@example.com").unwrap();
    let attempts = (0..10).map(|i| {
        let store = store.clone();
        let email = email.clone();
        tokio::spawn(async move {
            let u = User {
                id: Uuid::now_v7(),
                email,
                password_hash: format!("hash-{i}"),
                role: Role::Customer,
                created_at: Utc::now(),
                token_version: 0,
                email_verified: false,
            };
            store.create_user(&u).await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(Error::AlreadyExists(_)))))
        .count();
    assert_eq!((ok, conflicts), (1, 9));
}

/// Users are found by normalised email and by id; roles can change.
pub async fn users_lookup_and_roles(store: TestStore) {
    let u = user(&store, "Bob@Example.com").await;
    let found = store
        .find_user_by_email(&Email::parse("  BOB@example.COM").unwrap())
        .await
        .unwrap()
        .expect("found by normalised email");
    assert_eq!(found, u);
    assert_eq!(store.get_user(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(store.get_user(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(
        store
            .find_user_by_email(&Email::parse("nobody@example.com").unwrap())
            .await
            .unwrap(),
        None
    );
    let admin = store.set_role(&u.email, Role::Admin).await.unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(
        store.get_user(u.id).await.unwrap().unwrap().role,
        Role::Admin
    );
    let missing = store
        .set_role(&Email::parse("x@example.com").unwrap(), Role::Admin)
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
}

/// Every written form of one address is one account: case, Unicode composition (NFC/NFD) and
/// a Unicode or punycode domain.
pub async fn one_account_per_address_across_forms(store: TestStore) {
    let forms = [
        "Jos\u{e9}@B\u{fc}cher.example",     // composed, Unicode domain
        "jose\u{301}@bu\u{308}cher.example", // decomposed
        "JOS\u{c9}@xn--bcher-kva.example",   // upper case, punycode domain
    ];
    let first = user(&store, forms[0]).await;
    for form in &forms[1..] {
        let email = Email::parse(form).expect("valid");
        assert_eq!(email, first.email, "{form:?} normalises differently");
        let again = User {
            id: Uuid::now_v7(),
            email: email.clone(),
            password_hash: "$argon2id$other".into(),
            role: Role::Customer,
            created_at: now(),
            token_version: 0,
            email_verified: false,
        };
        let result = store.create_user(&again).await;
        assert!(
            matches!(result, Err(crate::Error::AlreadyExists(_))),
            "a second account for {form:?} must be AlreadyExists, got {result:?}"
        );
        let found = store.find_user_by_email(&email).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(first.id), "{form:?} not found");
    }
}

/// `revoke_tokens` and `set_role` raise a user's `token_version`; it is stored and read back.
pub async fn revoking_tokens_raises_the_version(store: TestStore) {
    let u = user(&store, "ver@example.com").await;
    assert_eq!(u.token_version, 0);
    let after = store.revoke_tokens(&u.email).await.expect("revoke_tokens");
    assert_eq!(
        after.token_version, 1,
        "revoke_tokens must raise token_version"
    );
    let after = store.set_role(&u.email, Role::Admin).await.unwrap();
    assert_eq!(
        (after.token_version, after.role),
        (2, Role::Admin),
        "set_role must raise token_version"
    );
    let stored = store.get_user(u.id).await.unwrap().expect("user");
    assert_eq!(stored.token_version, 2, "token_version is not stored");
    let by_email = store.find_user_by_email(&u.email).await.unwrap().unwrap();
    assert_eq!(by_email.token_version, 2);
    let missing = store
        .revoke_tokens(&Email::parse("nobody@example.com").unwrap())
        .await;
    assert!(
        matches!(missing, Err(crate::Error::NotFound(_))),
        "revoke_tokens of an unknown email must be NotFound, got {missing:?}"
    );
}

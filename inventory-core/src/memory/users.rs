//! The users port.

use super::*;

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        self.with(|s| {
            if s.user_by_email.contains_key(&user.email) {
                return Err(Error::AlreadyExists("email already registered".into()));
            }
            s.user_by_email.insert(user.email.clone(), user.id);
            s.users.insert(user.id, user.clone());
            Ok(())
        })
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        self.with(|s| {
            Ok(s.user_by_email
                .get(email)
                .and_then(|id| s.users.get(id))
                .cloned())
        })
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        self.with(|s| Ok(s.users.get(&id).cloned()))
    }

    async fn set_role(&self, email: &Email, role: Role) -> Result<User> {
        self.change_user(email, |user| {
            user.role = role;
            user.token_version += 1;
        })
    }

    async fn revoke_tokens(&self, email: &Email) -> Result<User> {
        self.change_user(email, |user| user.token_version += 1)
    }

    async fn mark_email_verified(&self, email: &Email) -> Result<User> {
        self.change_user(email, |user| user.email_verified = true)
    }
}

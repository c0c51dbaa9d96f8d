//! The access policy as pure functions: given who calls and whose
//! engagement it is, may they see it, may they control it. No IO; the
//! callers look the facts up and carry the answer out.

use crate::status::BusEvent;

/// Who is calling, as far as access goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Demo mode: every engagement is simulated and belongs to no one.
    Demo,
    /// `Authorization: Bearer <ADMIN_TOKEN>`: sees everything, changes nothing.
    Operator,
    /// A browser session bound by the app context or the install.
    User(User),
    Anonymous,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    /// Known once the user (or their account's admin) installed the app.
    pub account_id: Option<String>,
    /// Sees every engagement of their own account.
    pub supervisor: bool,
}

/// Whose an engagement is: its Zoom account and the agent Zoom assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub account_id: Option<&'a str>,
    pub agent_user_id: Option<&'a str>,
}

/// What the engagement list is drawn from, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Everything,
    Account(&'a str),
    Agent(&'a str),
    Nothing,
}

/// Whether a Zoom `users/me` role makes its holder a supervisor.
pub fn is_supervisor_role(role_name: &str) -> bool {
    matches!(
        role_name.trim().to_ascii_lowercase().as_str(),
        "owner" | "admin"
    )
}

impl Caller {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Caller::Anonymous)
    }

    /// The engagements this caller may list.
    pub fn scope(&self) -> Scope<'_> {
        match self {
            Caller::Demo | Caller::Operator => Scope::Everything,
            Caller::User(User {
                supervisor: true,
                account_id: Some(account),
                ..
            }) => Scope::Account(account),
            Caller::User(u) => Scope::Agent(&u.user_id),
            Caller::Anonymous => Scope::Nothing,
        }
    }
}

/// The agent assigned to the engagement, in the engagement's account.
fn is_agent_of(user: &User, owner: &Owner<'_>) -> bool {
    let same_account = match (owner.account_id, user.account_id.as_deref()) {
        (Some(theirs), Some(mine)) => theirs == mine,
        _ => true,
    };
    owner.agent_user_id == Some(user.user_id.as_str()) && same_account
}

/// May `caller` see the engagement (`None` = not known to the app)?
pub fn may_see(caller: &Caller, owner: Option<&Owner<'_>>) -> bool {
    match caller {
        Caller::Demo | Caller::Operator => true,
        Caller::Anonymous => false,
        Caller::User(user) => owner.is_some_and(|o| {
            is_agent_of(user, o)
                || (user.supervisor
                    && user.account_id.is_some()
                    && o.account_id == user.account_id.as_deref())
        }),
    }
}

/// May `caller` see an event that names no engagement? Only plain status
/// lines are app-wide notices; anything else without an owner stays with
/// those who see everything.
pub fn may_see_unowned(caller: &Caller, event: &BusEvent) -> bool {
    match caller {
        Caller::Demo | Caller::Operator => true,
        Caller::Anonymous => false,
        Caller::User(_) => matches!(event, BusEvent::Status(_)),
    }
}

/// The answer to a control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Allow,
    /// 401: nobody is signed in.
    SignIn,
    /// 403 with a reason: the caller knows the engagement but may not act.
    Forbidden(&'static str),
    /// 404: not the caller's (nor known to them); says nothing more.
    NotFound,
}

/// May `caller` start/stop/pause/resume RTMS on the engagement?
pub fn may_control(caller: &Caller, owner: Option<&Owner<'_>>) -> Control {
    match caller {
        Caller::Demo => Control::Allow,
        Caller::Operator => Control::Forbidden("the operator token is read-only"),
        Caller::Anonymous => Control::SignIn,
        Caller::User(user) => match owner {
            Some(o) if is_agent_of(user, o) => Control::Allow,
            Some(o) if may_see(caller, Some(o)) => {
                Control::Forbidden("only the agent assigned to this engagement may control it")
            }
            _ => Control::NotFound,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, account: Option<&str>, supervisor: bool) -> Caller {
        Caller::User(User {
            user_id: id.into(),
            account_id: account.map(Into::into),
            supervisor,
        })
    }

    const ANNS: Owner<'static> = Owner {
        account_id: Some("acct-1"),
        agent_user_id: Some("ann"),
    };
    const UNASSIGNED: Owner<'static> = Owner {
        account_id: Some("acct-1"),
        agent_user_id: None,
    };

    #[test]
    fn who_sees_an_engagement() {
        let cases = [
            (user("ann", Some("acct-1"), false), Some(ANNS), true),
            (user("ann", None, false), Some(ANNS), true),
            (user("ann", Some("acct-2"), false), Some(ANNS), false),
            (user("bob", Some("acct-1"), false), Some(ANNS), false),
            (user("bob", Some("acct-1"), false), Some(UNASSIGNED), false),
            (user("sup", Some("acct-1"), true), Some(ANNS), true),
            (user("sup", Some("acct-1"), true), Some(UNASSIGNED), true),
            (user("sup", Some("acct-2"), true), Some(ANNS), false),
            (user("sup", None, true), Some(UNASSIGNED), false),
            (user("ann", Some("acct-1"), true), None, false),
            (Caller::Operator, Some(ANNS), true),
            (Caller::Operator, None, true),
            (Caller::Demo, None, true),
            (Caller::Anonymous, Some(ANNS), false),
        ];
        for (caller, owner, expected) in cases {
            assert_eq!(
                may_see(&caller, owner.as_ref()),
                expected,
                "{caller:?} on {owner:?}"
            );
        }
    }

    #[test]
    fn only_the_assigned_agent_controls_and_others_learn_nothing() {
        let sup = user("sup", Some("acct-1"), true);
        assert_eq!(
            may_control(&user("ann", Some("acct-1"), false), Some(&ANNS)),
            Control::Allow
        );
        assert_eq!(
            may_control(&user("bob", Some("acct-1"), false), Some(&ANNS)),
            Control::NotFound
        );
        assert_eq!(
            may_control(&user("ann", Some("acct-1"), false), None),
            Control::NotFound
        );
        assert!(matches!(
            may_control(&sup, Some(&ANNS)),
            Control::Forbidden(_)
        ));
        assert!(matches!(
            may_control(&Caller::Operator, Some(&ANNS)),
            Control::Forbidden(_)
        ));
        assert_eq!(may_control(&Caller::Anonymous, None), Control::SignIn);
        assert_eq!(may_control(&Caller::Demo, None), Control::Allow);
    }

    #[test]
    fn scopes_and_roles() {
        assert_eq!(
            user("sup", Some("a"), true).scope(),
            Scope::Account("a"),
            "a supervisor lists their account"
        );
        assert_eq!(user("sup", None, true).scope(), Scope::Agent("sup"));
        assert_eq!(user("ann", Some("a"), false).scope(), Scope::Agent("ann"));
        assert_eq!(Caller::Operator.scope(), Scope::Everything);
        assert_eq!(Caller::Anonymous.scope(), Scope::Nothing);
        assert!(is_supervisor_role("Owner") && is_supervisor_role(" admin "));
        assert!(!is_supervisor_role("Member") && !is_supervisor_role(""));
    }

    #[test]
    fn unowned_events_are_plain_status_lines_for_signed_in_callers() {
        let line = BusEvent::Status(crate::status::StatusEvent {
            id: 1,
            timestamp: String::new(),
            message: "notice".into(),
            level: crate::status::Level::Info,
            engagement_id: None,
        });
        assert!(may_see_unowned(&user("ann", None, false), &line));
        assert!(!may_see_unowned(&Caller::Anonymous, &line));
    }
}

//! Who may do what through the API: the roles an API token carries and what each allows. The
//! server decides which [`Access`] a request needs; this module only says which roles grant it.
//!
//! | role | may |
//! |---|---|
//! | `viewer` | read: workflows, runs, approvals, tools, metrics |
//! | `operator` | also start, retry, replay and cancel runs, answer approvals, call every tool |
//! | `editor` | also change workflows and connections |
//! | `admin` | also manage tokens and secrets |
//! | `tool` | call the tools its token lists, and nothing else |

use std::fmt;

/// The role of an API token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Operate, and change workflows and connections.
    Editor,
    /// Read, and steer runs, answer approvals, call tools.
    Operator,
    /// Read only.
    Viewer,
    /// Call the listed tools only.
    Tool,
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read anything but secrets and tokens.
    Read,
    /// Start and steer runs, answer approvals.
    Operate,
    /// Change workflows and connections.
    Edit,
    /// Manage tokens and secrets.
    Admin,
    /// Call tools (which ones, the server checks per call for the `tool` role).
    Tools,
}

/// Every role, strongest first.
pub const ROLES: &[Role] = &[
    Role::Admin,
    Role::Editor,
    Role::Operator,
    Role::Viewer,
    Role::Tool,
];

impl Role {
    /// The role named `name` (`admin`, `editor`, `operator`, `viewer`, `tool`).
    pub fn parse(name: &str) -> Option<Role> {
        ROLES.iter().copied().find(|r| r.as_str() == name)
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Tool => "tool",
        }
    }

    /// Whether the role grants `access`.
    pub fn allows(self, access: Access) -> bool {
        match self {
            Role::Admin => true,
            Role::Editor => access != Access::Admin,
            Role::Operator => matches!(access, Access::Read | Access::Operate | Access::Tools),
            Role::Viewer => access == Access::Read,
            Role::Tool => access == Access::Tools,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Operate => "steer runs and answer approvals",
            Access::Edit => "change workflows and connections",
            Access::Admin => "manage tokens and secrets",
            Access::Tools => "call tools",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_grants_what_the_table_says() {
        use Access::*;
        let grants = |r: Role| -> Vec<Access> {
            [Read, Operate, Edit, Admin, Tools]
                .into_iter()
                .filter(|a| r.allows(*a))
                .collect()
        };
        assert_eq!(grants(Role::Admin), [Read, Operate, Edit, Admin, Tools]);
        assert_eq!(grants(Role::Editor), [Read, Operate, Edit, Tools]);
        assert_eq!(grants(Role::Operator), [Read, Operate, Tools]);
        assert_eq!(grants(Role::Viewer), [Read]);
        assert_eq!(grants(Role::Tool), [Tools]);
        for r in ROLES {
            assert_eq!(Role::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}

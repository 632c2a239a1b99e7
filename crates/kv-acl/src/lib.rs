//! Redis ACLs for kvstore: who a connection is, and what it may run and touch.
//!
//! Gates and servers check every command against the connection's [`User`] before running
//! it: the command (or `command|subcommand`), its keys (read and write patterns) and its
//! channels. A user allowed everything (the default user without ACL configuration) costs
//! one branch per request.
//!
//! - [`category`]: Redis's command categories (`@read`, `@string` …).
//! - [`user`]: one user and its rules (`ACL SETUSER`'s syntax).
//! - [`users`]: the user set, replaced whole on change; a connection's [`Session`].
//! - [`command`]: `ACL …`'s replies and `ACL LOG`.
//! - [`store`]: the cluster's one user store in the coordinator, and following it.

pub mod category;
pub mod command;
pub mod store;
pub mod user;
pub mod users;

pub use user::{Denied, User};
pub use users::{Acl, AclFileError, Admit, Fresh, Session, Users};

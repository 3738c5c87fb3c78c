//! The GitHub side: Actions workflow commands and files, the sticky PR
//! comment, proposing a refreshed baseline as a pull request, and keeping
//! the history on a branch.

pub mod actions;
pub mod api;
pub mod comment;
pub mod history;
pub mod propose;

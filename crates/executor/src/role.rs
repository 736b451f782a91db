//! Executor role detection.

use spate_core::protocol::env;

/// Set by a driver in the environment of the executor processes it starts.
pub const EXECUTOR_ENV: &str = env::DRIVER;

/// What this process was started as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A user program: the driver.
    Driver,
    /// An executor started by a driver; the value is the driver's control address.
    Executor(String),
    /// A custom executor started by a Mesos agent for a spate framework.
    Mesos,
}

/// Read the role from an environment lookup (a function, so tests need not touch the
/// process environment).
pub fn role_from(get: impl Fn(&str) -> Option<String>) -> Role {
    let set = |k: &str| get(k).is_some_and(|v| !v.is_empty());
    match get(EXECUTOR_ENV) {
        Some(v) if !v.is_empty() => Role::Executor(v),
        // An agent sets these for every executor it starts; spate's framework adds the
        // secret through CommandInfo.environment.
        _ if set("MESOS_AGENT_ENDPOINT") && set("MESOS_EXECUTOR_ID") && set(env::SECRET) => {
            Role::Mesos
        }
        _ => Role::Driver,
    }
}

/// The role of this process.
pub fn current_role() -> Role {
    role_from(|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_unless_the_variable_is_set() {
        assert_eq!(role_from(|_| None), Role::Driver);
        assert_eq!(role_from(|_| Some(String::new())), Role::Driver);
        assert_eq!(
            role_from(|_| Some("127.0.0.1:7000".into())),
            Role::Executor("127.0.0.1:7000".into())
        );
    }
}

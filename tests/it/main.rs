//! The integration tests, one module per area, in one binary.

mod agent;
mod business_hours;
mod cors;
mod costs;
mod crash;
mod domain_props;
mod faults;
mod flow;
mod handover_window;
mod hostile;
mod iam;
mod load;
mod local_runner;
mod logs;
mod metrics;
mod msc_rate_limit;
mod operator_view;
mod parsers;
mod routes;
mod sdk_config;
mod secrets;
mod store_contract;
mod store_race;
mod tls;
mod tokens;
mod transcript;

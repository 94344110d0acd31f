//! Integration tests: real drivers (tokio-postgres, psql, pgbench) through a real
//! gateway to a real, throwaway Postgres that the tests start themselves.

#[path = "../common/mod.rs"]
mod common;

mod harness;
mod judge_memo;

mod approvals;
mod audit;
mod audit_tail;
mod console_sql;
mod console_web;
mod differential;
mod masking;
mod masking_pass;
mod mcp;
mod migrations;
mod prepared_stale;
mod threats_code;
mod threats_ddl;

mod auth;
mod catalog_peers;
mod cli;
mod cluster;
mod cluster_state;
mod default_path;
mod door_tenants;
mod drivers;
mod drivers_regressions;
mod http_gateway;
mod http_gateway_fixture;
mod http_gateway_lean;
mod http_gateway_limits;
mod http_gateway_masked;
mod http_gateway_upstream;
mod login;
mod mtls;
mod oidc;
mod relay;
mod robustness;
mod rules;
mod sessions;
mod ssh;
mod ssh_env;
mod ssh_limits;
mod ssh_recording;
mod ssh_token;
mod tenants;
mod threats_leaks;
mod threats_masks2;
mod threats_names;
mod threats_review;
mod threats_rls;
mod threats_rules2;
mod threats_wire;
mod threats_writes;
mod tls;

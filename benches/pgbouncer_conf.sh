# pgbouncer_conf.sh - sourced by the bench scripts: the one PgBouncer setup they compare
# against (session pooling, SCRAM, 127.0.0.1 only).
#
# write_pgbouncer_conf DIR PORT PG_PORT PASSWORD [SERVER_LOGIN]
#   writes DIR/pgbouncer.ini and DIR/userlist.txt: clients log in as `bench` with
#   PASSWORD; PgBouncer logs in to database `bench` on 127.0.0.1:PG_PORT with the same
#   password, or with SERVER_LOGIN ("user=bench password=...") when given. Start it with
#   `pgbouncer DIR/pgbouncer.ini` (as the `postgres` user when root: DIR is theirs).
write_pgbouncer_conf() {
    local dir=$1 port=$2 pg_port=$3 password=$4 server_login=${5:-}
    mkdir -p "$dir"
    printf '"bench" "%s"\n' "$password" >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<EOT
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench${server_login:+ $server_login}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 20
logfile = $dir/pgbouncer.log
ignore_startup_parameters = extra_float_digits
EOT
    if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
    chmod 600 "$dir/userlist.txt"
}

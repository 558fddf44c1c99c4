-- Administration of a server and its databases, for pgq.testing (testing/databases.py):
-- a throwaway test server, and a database per test cloned from a migrated template.

-- name: admin_fast_fsync
-- A throwaway test server needs no durability; these three make it several times faster.
alter system set fsync = 'off';

-- name: admin_fast_synchronous_commit
alter system set synchronous_commit = 'off';

-- name: admin_fast_full_page_writes
alter system set full_page_writes = 'off';

-- name: admin_reload_conf
select pg_reload_conf();

-- name: admin_create_database
create database {ident:database};

-- name: admin_create_database_from
create database {ident:database} template {ident:template};

-- name: admin_drop_database
-- with (force): closes whatever is still connected to it.
drop database if exists {ident:database} with (force);

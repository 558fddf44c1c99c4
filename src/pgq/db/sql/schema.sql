-- name: schema_version
select version_num from {schema}.alembic_version;

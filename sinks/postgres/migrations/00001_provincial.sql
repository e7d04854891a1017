-- +goose Up
-- The provincial schema (防返贫监测, fpjc): one table per canonical entity, whose columns
-- are the entity's fields (schemas/json/<entity>.v1.json), plus the sink's own
-- bookkeeping. PostgreSQL SQL only, no extensions, so that PostgreSQL-compatible
-- databases (openGauss, KingbaseES) can host it. Every entity row carries the entity
-- version it was written from: the sink applies a change only when its version is newer
-- than the stored one, so a redelivered or reordered change never regresses a row.
-- deleted marks a row deleted at the source (soft delete; the row keeps its last
-- values); applied_at is when the sink last changed the row. Entity tables leave a
-- fifth of each page free (fillfactor 80) so that an update whose indexed columns did
-- not change stays on its page without new index entries (a HOT update): 1.35× the
-- update throughput in BenchmarkUpsert.
CREATE SCHEMA IF NOT EXISTS fpjc;

CREATE TABLE fpjc.household (
    key                        text PRIMARY KEY,
    version                    bigint NOT NULL CHECK (version > 0),
    source_system              text,
    source_table               text,
    source_position            text,
    updated_ms                 bigint,
    household_no               text,
    region_code                text,
    village_code               text,
    county_name                text,
    township_name              text,
    village_name               text,
    natural_village            text,
    household_type             text,
    monitoring_category        integer,
    no_labour_supported        boolean,
    head_name                  text,
    head_id_no                 text,
    member_count               integer,
    phone                      text,
    risks                      text[],
    disaster_sub_item          text,
    risk_remark                text,
    identified_ym              text,
    risk_eliminated            boolean,
    elimination_method         text,
    eliminated_ym              text,
    annual_income              numeric,
    per_capita_net_income      numeric,
    wage_income                numeric,
    business_income            numeric,
    property_income            numeric,
    transfer_income            numeric,
    business_expense           numeric,
    compliant_out_of_pocket    numeric,
    dibao_amount               numeric,
    tekun_amount               numeric,
    child_out_of_school        boolean,
    member_uninsured           boolean,
    dangerous_house            boolean,
    safe_drinking_water        boolean,
    housing_area_m2            numeric,
    has_electricity            boolean,
    road_hardened              boolean,
    distance_to_main_road_km   numeric,
    farmland_mu                numeric,
    forest_land_mu             numeric,
    returned_farmland_mu       numeric,
    orchard_mu                 numeric,
    grassland_mu               numeric,
    water_surface_mu           numeric,
    measures                   text[],
    development_measure_status text,
    monitoring_contact         text,
    monitoring_contact_phone   text,
    collector                  text,
    relocated                  boolean,
    resettlement_site          text,
    resettlement_mode          text,
    deleted                    boolean NOT NULL DEFAULT false,
    applied_at                 timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX household_region_code_idx ON fpjc.household (region_code text_pattern_ops);
CREATE INDEX household_village_code_idx ON fpjc.household (village_code);

CREATE TABLE fpjc.person (
    key                        text PRIMARY KEY,
    version                    bigint NOT NULL CHECK (version > 0),
    source_system              text,
    source_table               text,
    source_position            text,
    updated_ms                 bigint,
    person_no                  text,
    household_no               text,
    region_code                text,
    id_type                    text,
    id_no                      text,
    name                       text,
    sex                        text,
    birth_date                 text,
    ethnicity                  text,
    relation_to_head           text,
    education                  text,
    school_status              text,
    not_in_school_reason       text,
    dropout_reason             text,
    health                     text,
    disability_type            text,
    disability_grade           text,
    disability_cert_no         text,
    labour_skill               text,
    work_status                text,
    work_place                 text,
    work_months                integer,
    work_monthly_income        numeric,
    employment_channel         text,
    public_welfare_job         boolean,
    public_welfare_job_months  integer,
    resident_medical_insurance boolean,
    employee_medical_insurance boolean,
    serious_illness_insurance  boolean,
    resident_pension           boolean,
    employee_pension           boolean,
    medical_assistance         boolean,
    dibao_status               text,
    tekun_status               text,
    phone                      text,
    deceased                   boolean,
    cancelled_date             text,
    deleted                    boolean NOT NULL DEFAULT false,
    applied_at                 timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX person_household_no_idx ON fpjc.person (household_no);
CREATE INDEX person_id_no_idx ON fpjc.person (id_no);
CREATE INDEX person_region_code_idx ON fpjc.person (region_code text_pattern_ops);

CREATE TABLE fpjc.monitoring_episode (
    key                text PRIMARY KEY,
    version            bigint NOT NULL CHECK (version > 0),
    source_system      text,
    source_table       text,
    source_position    text,
    updated_ms         bigint,
    household_no       text,
    region_code        text,
    identified_ym      text,
    category           integer,
    channel            text,
    risks              text[],
    disaster_sub_item  text,
    eliminated         boolean,
    elimination_method text,
    eliminated_ym      text,
    status             text CHECK (status IN ('monitoring', 'eliminated', 'cancelled')),
    deleted            boolean NOT NULL DEFAULT false,
    applied_at         timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX monitoring_episode_household_no_idx ON fpjc.monitoring_episode (household_no);
CREATE INDEX monitoring_episode_region_code_idx ON fpjc.monitoring_episode (region_code text_pattern_ops);

CREATE TABLE fpjc.assistance_measure (
    key                   text PRIMARY KEY,
    version               bigint NOT NULL CHECK (version > 0),
    source_system         text,
    source_table          text,
    source_position       text,
    updated_ms            bigint,
    household_no          text,
    person_no             text,
    region_code           text,
    category              text,
    item                  text,
    development           boolean,
    implementation_status text,
    start_ym              text,
    end_ym                text,
    amount                numeric,
    note                  text,
    deleted               boolean NOT NULL DEFAULT false,
    applied_at            timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX assistance_measure_household_no_idx ON fpjc.assistance_measure (household_no);

CREATE TABLE fpjc.department_fact (
    key             text PRIMARY KEY,
    version         bigint NOT NULL CHECK (version > 0),
    source_system   text,
    source_table    text,
    source_position text,
    updated_ms      bigint,
    department      text,
    dataset         text,
    fact_type       text,
    id_no           text,
    household_no    text,
    region_code     text,
    period          text,
    occurred_on     text,
    amount          numeric,
    values          jsonb,
    deleted         boolean NOT NULL DEFAULT false,
    applied_at      timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX department_fact_id_no_idx ON fpjc.department_fact (id_no);
CREATE INDEX department_fact_department_dataset_idx ON fpjc.department_fact (department, dataset);

CREATE TABLE fpjc.warning (
    key             text PRIMARY KEY,
    version         bigint NOT NULL CHECK (version > 0),
    source_system   text,
    source_table    text,
    source_position text,
    updated_ms      bigint,
    id              text,
    rule_id         text,
    department      text,
    subject_kind    text,
    subject_key     text,
    household_no    text,
    region_code     text,
    period          text,
    raised_at       text,
    due_days        integer,
    due_at          text,
    status          text CHECK (status IN ('open', 'verifying', 'identified', 'dismissed')),
    resolution      text,
    evidence        jsonb,
    fact_keys       text[],
    deleted         boolean NOT NULL DEFAULT false,
    applied_at      timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX warning_household_no_idx ON fpjc.warning (household_no);
CREATE INDEX warning_region_code_idx ON fpjc.warning (region_code text_pattern_ops);
CREATE INDEX warning_status_due_at_idx ON fpjc.warning (status, due_at);

CREATE TABLE fpjc.quality_issue (
    key             text PRIMARY KEY,
    version         bigint NOT NULL CHECK (version > 0),
    source_system   text,
    source_table    text,
    source_position text,
    updated_ms      bigint,
    id              text,
    rule_id         text,
    subject_kind    text,
    subject_key     text,
    region_code     text,
    severity        text,
    status          text CHECK (status IN ('open', 'closed')),
    detail          text,
    first_seen      text,
    last_seen       text,
    closed_at       text,
    deleted         boolean NOT NULL DEFAULT false,
    applied_at      timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX quality_issue_rule_id_status_idx ON fpjc.quality_issue (rule_id, status);
CREATE INDEX quality_issue_region_code_idx ON fpjc.quality_issue (region_code text_pattern_ops);

CREATE TABLE fpjc.discrepancy (
    key              text PRIMARY KEY,
    version          bigint NOT NULL CHECK (version > 0),
    source_system    text,
    source_table     text,
    source_position  text,
    updated_ms       bigint,
    id               text,
    department       text,
    subject_kind     text,
    subject_key      text,
    household_no     text,
    region_code      text,
    field            text,
    registry_value   text,
    department_value text,
    status           text CHECK (status IN ('pending', 'confirmed', 'corrected', 'rejected')),
    reason           text,
    detected_at      text,
    resolved_at      text,
    fact_key         text,
    deleted          boolean NOT NULL DEFAULT false,
    applied_at       timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX discrepancy_department_status_idx ON fpjc.discrepancy (department, status);
CREATE INDEX discrepancy_region_code_idx ON fpjc.discrepancy (region_code text_pattern_ops);

-- Every version of a warning the sink applied: its lifecycle (opened, status changes,
-- closed), one row per version.
CREATE TABLE fpjc.warning_history (
    key        text NOT NULL,
    version    bigint NOT NULL,
    status     text,
    changed_ms bigint,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, version)
);

-- Every version of a quality issue the sink applied: its lifecycle (opened, status changes,
-- closed), one row per version.
CREATE TABLE fpjc.quality_issue_history (
    key        text NOT NULL,
    version    bigint NOT NULL,
    status     text,
    changed_ms bigint,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, version)
);

-- Every version of a discrepancy the sink applied: its lifecycle (opened, status changes,
-- closed), one row per version.
CREATE TABLE fpjc.discrepancy_history (
    key        text NOT NULL,
    version    bigint NOT NULL,
    status     text,
    changed_ms bigint,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, version)
);

-- Where each sink's consumer is: the next offset to read per topic partition, written in
-- the same transaction as the rows it covers (effectively-once).
CREATE TABLE fpjc.sink_offsets (
    sink        text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, topic, partition)
);

-- The newest version deleted per key when deletes are hard (the row itself is gone), so
-- that an older change redelivered later does not bring the row back.
CREATE TABLE fpjc.sink_tombstones (
    entity_table text NOT NULL,
    key          text NOT NULL,
    version      bigint NOT NULL,
    deleted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_table, key)
);

-- +goose Down
DROP SCHEMA fpjc CASCADE;

-- Department sources (部门数据) as published on the provincial data-sharing platform,
-- PostgreSQL 15, one schema per department. ID numbers are the join key with the
-- registry; departments carry the 18-digit form. Column comments give the Chinese
-- names used in the departments' own exports. See schemas/ddl/README.md.

CREATE SCHEMA IF NOT EXISTS yibao;
CREATE SCHEMA IF NOT EXISTS canlian;
CREATE SCHEMA IF NOT EXISTS zhujian;
CREATE SCHEMA IF NOT EXISTS minzheng;
CREATE SCHEMA IF NOT EXISTS gongan;
CREATE SCHEMA IF NOT EXISTS jiaoyu;
CREATE SCHEMA IF NOT EXISTS yingji;

CREATE TABLE IF NOT EXISTS yibao.settlement (
  settlement_no            text          PRIMARY KEY,
  id_no                    text          NOT NULL,
  name                     text          NOT NULL,
  region_code              char(12)      NOT NULL,
  settle_date              date          NOT NULL,
  visit_type               text          NOT NULL CHECK (visit_type IN ('门诊','住院','门诊慢特病')),
  total_cost               numeric(12,2) NOT NULL,
  fund_paid                numeric(12,2) NOT NULL,
  serious_illness_paid     numeric(12,2) NOT NULL,
  medical_assistance_paid  numeric(12,2) NOT NULL,
  out_of_pocket            numeric(12,2) NOT NULL,
  compliant_out_of_pocket  numeric(12,2) NOT NULL
);
CREATE INDEX IF NOT EXISTS settlement_id_no ON yibao.settlement (id_no, settle_date);
COMMENT ON TABLE  yibao.settlement IS '医保结算';
COMMENT ON COLUMN yibao.settlement.settlement_no IS '结算流水号';
COMMENT ON COLUMN yibao.settlement.id_no IS '身份证号码';
COMMENT ON COLUMN yibao.settlement.name IS '姓名';
COMMENT ON COLUMN yibao.settlement.region_code IS '参保地区划代码';
COMMENT ON COLUMN yibao.settlement.settle_date IS '结算日期';
COMMENT ON COLUMN yibao.settlement.visit_type IS '就诊类型(门诊/住院/门诊慢特病)';
COMMENT ON COLUMN yibao.settlement.total_cost IS '医疗总费用';
COMMENT ON COLUMN yibao.settlement.fund_paid IS '基本医保统筹支付';
COMMENT ON COLUMN yibao.settlement.serious_illness_paid IS '大病保险支付';
COMMENT ON COLUMN yibao.settlement.medical_assistance_paid IS '医疗救助支付';
COMMENT ON COLUMN yibao.settlement.out_of_pocket IS '个人自付';
COMMENT ON COLUMN yibao.settlement.compliant_out_of_pocket IS '合规自付';

CREATE TABLE IF NOT EXISTS canlian.disability_cert (
  cert_no                  text          PRIMARY KEY,
  id_no                    text          NOT NULL,
  name                     text          NOT NULL,
  region_code              char(12)      NOT NULL,
  disability_type          text          NOT NULL,
  disability_grade         smallint      NOT NULL CHECK (disability_grade BETWEEN 1 AND 4),
  issue_date               date          NOT NULL,
  status                   text          NOT NULL
);
CREATE INDEX IF NOT EXISTS disability_cert_id_no ON canlian.disability_cert (id_no);
COMMENT ON TABLE  canlian.disability_cert IS '残疾人证';
COMMENT ON COLUMN canlian.disability_cert.cert_no IS '残疾人证号';
COMMENT ON COLUMN canlian.disability_cert.id_no IS '身份证号码';
COMMENT ON COLUMN canlian.disability_cert.name IS '姓名';
COMMENT ON COLUMN canlian.disability_cert.region_code IS '户籍地区划代码';
COMMENT ON COLUMN canlian.disability_cert.disability_type IS '残疾类别';
COMMENT ON COLUMN canlian.disability_cert.disability_grade IS '残疾等级(1-4)';
COMMENT ON COLUMN canlian.disability_cert.issue_date IS '发证日期';
COMMENT ON COLUMN canlian.disability_cert.status IS '证件状态';

CREATE TABLE IF NOT EXISTS zhujian.housing_appraisal (
  appraisal_no             text          PRIMARY KEY,
  head_id_no               text          NOT NULL,
  head_name                text          NOT NULL,
  village_code             char(12)      NOT NULL,
  appraisal_date           date          NOT NULL,
  grade                    char(1)       NOT NULL CHECK (grade IN ('A','B','C','D'))
);
CREATE INDEX IF NOT EXISTS housing_appraisal_head ON zhujian.housing_appraisal (head_id_no);
COMMENT ON TABLE  zhujian.housing_appraisal IS '农村住房安全性鉴定';
COMMENT ON COLUMN zhujian.housing_appraisal.appraisal_no IS '鉴定编号';
COMMENT ON COLUMN zhujian.housing_appraisal.head_id_no IS '户主身份证号码';
COMMENT ON COLUMN zhujian.housing_appraisal.head_name IS '户主姓名';
COMMENT ON COLUMN zhujian.housing_appraisal.village_code IS '村代码';
COMMENT ON COLUMN zhujian.housing_appraisal.appraisal_date IS '鉴定日期';
COMMENT ON COLUMN zhujian.housing_appraisal.grade IS '鉴定等级(A/B/C/D, C/D为危房)';

CREATE TABLE IF NOT EXISTS minzheng.assistance_recipient (
  record_no                text          PRIMARY KEY,
  id_no                    text          NOT NULL,
  name                     text          NOT NULL,
  region_code              char(12)      NOT NULL,
  assistance_type          text          NOT NULL CHECK (assistance_type IN ('低保','特困','临时救助')),
  start_date               date          NOT NULL,
  end_date                 date,
  monthly_amount           numeric(12,2) NOT NULL
);
CREATE INDEX IF NOT EXISTS assistance_recipient_id_no ON minzheng.assistance_recipient (id_no);
COMMENT ON TABLE  minzheng.assistance_recipient IS '社会救助对象';
COMMENT ON COLUMN minzheng.assistance_recipient.record_no IS '救助记录编号';
COMMENT ON COLUMN minzheng.assistance_recipient.id_no IS '身份证号码';
COMMENT ON COLUMN minzheng.assistance_recipient.name IS '姓名';
COMMENT ON COLUMN minzheng.assistance_recipient.region_code IS '户籍地区划代码';
COMMENT ON COLUMN minzheng.assistance_recipient.assistance_type IS '救助类型(低保/特困/临时救助)';
COMMENT ON COLUMN minzheng.assistance_recipient.start_date IS '救助开始日期';
COMMENT ON COLUMN minzheng.assistance_recipient.end_date IS '救助结束日期';
COMMENT ON COLUMN minzheng.assistance_recipient.monthly_amount IS '救助金额(元/月, 临时救助为一次性金额)';

CREATE TABLE IF NOT EXISTS gongan.death (
  record_no                text          PRIMARY KEY,
  id_no                    text          NOT NULL,
  name                     text          NOT NULL,
  region_code              char(12)      NOT NULL,
  death_date               date          NOT NULL,
  deregistered_date        date          NOT NULL
);
CREATE INDEX IF NOT EXISTS death_id_no ON gongan.death (id_no);
COMMENT ON TABLE  gongan.death IS '死亡注销户口';
COMMENT ON COLUMN gongan.death.record_no IS '记录编号';
COMMENT ON COLUMN gongan.death.id_no IS '身份证号码';
COMMENT ON COLUMN gongan.death.name IS '姓名';
COMMENT ON COLUMN gongan.death.region_code IS '户籍地区划代码';
COMMENT ON COLUMN gongan.death.death_date IS '死亡日期';
COMMENT ON COLUMN gongan.death.deregistered_date IS '注销日期';

CREATE TABLE IF NOT EXISTS jiaoyu.student (
  student_no               text          PRIMARY KEY,
  id_no                    text          NOT NULL,
  name                     text          NOT NULL,
  region_code              char(12)      NOT NULL,
  birth_date               date          NOT NULL,
  stage                    text          NOT NULL,
  status                   text          NOT NULL CHECK (status IN ('在读','辍学','休学','毕业')),
  dropout_date             date
);
CREATE INDEX IF NOT EXISTS student_id_no ON jiaoyu.student (id_no);
COMMENT ON TABLE  jiaoyu.student IS '学籍信息';
COMMENT ON COLUMN jiaoyu.student.student_no IS '学籍号';
COMMENT ON COLUMN jiaoyu.student.id_no IS '身份证号码';
COMMENT ON COLUMN jiaoyu.student.name IS '姓名';
COMMENT ON COLUMN jiaoyu.student.region_code IS '户籍地区划代码';
COMMENT ON COLUMN jiaoyu.student.birth_date IS '出生日期';
COMMENT ON COLUMN jiaoyu.student.stage IS '学段年级';
COMMENT ON COLUMN jiaoyu.student.status IS '学籍状态(在读/辍学/休学/毕业)';
COMMENT ON COLUMN jiaoyu.student.dropout_date IS '辍学日期';

CREATE TABLE IF NOT EXISTS yingji.disaster (
  record_no                text          PRIMARY KEY,
  head_id_no               text          NOT NULL,
  head_name                text          NOT NULL,
  village_code             char(12)      NOT NULL,
  disaster_type            text          NOT NULL,
  disaster_date            date          NOT NULL,
  loss_amount              numeric(12,2) NOT NULL
);
CREATE INDEX IF NOT EXISTS disaster_head ON yingji.disaster (head_id_no);
COMMENT ON TABLE  yingji.disaster IS '受灾户';
COMMENT ON COLUMN yingji.disaster.record_no IS '记录编号';
COMMENT ON COLUMN yingji.disaster.head_id_no IS '户主身份证号码';
COMMENT ON COLUMN yingji.disaster.head_name IS '户主姓名';
COMMENT ON COLUMN yingji.disaster.village_code IS '村代码';
COMMENT ON COLUMN yingji.disaster.disaster_type IS '灾害类型';
COMMENT ON COLUMN yingji.disaster.disaster_date IS '受灾日期';
COMMENT ON COLUMN yingji.disaster.loss_amount IS '直接经济损失(元)';

-- Exchange tables published for change data capture keep complete before-images in the
-- WAL, so that updates and deletes carry the whole previous row downstream (without this
-- PostgreSQL logs only the key columns of the old row).
ALTER TABLE yibao.settlement REPLICA IDENTITY FULL;
ALTER TABLE canlian.disability_cert REPLICA IDENTITY FULL;
ALTER TABLE zhujian.housing_appraisal REPLICA IDENTITY FULL;
ALTER TABLE minzheng.assistance_recipient REPLICA IDENTITY FULL;
ALTER TABLE gongan.death REPLICA IDENTITY FULL;
ALTER TABLE jiaoyu.student REPLICA IDENTITY FULL;
ALTER TABLE yingji.disaster REPLICA IDENTITY FULL;

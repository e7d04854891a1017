package schemas

// Person is the canonical household member (家庭成员). Key is the national person
// number. IDNo is the join key with department data, so it is normalised before it
// gets here (full-width digits, lower-case x, spaces, 15→18 digits) or protected as
// configured by the PII transform. Optional yes/no fields are *bool: nil means "not
// recorded", which Q-042/Q-043 must tell apart from "no".
type Person struct {
	Meta
	// PersonNo is 人编号, the national person number (equals Key).
	PersonNo string `json:"person_no"`
	// HouseholdNo is the household's 户编号.
	HouseholdNo string `json:"household_no"`
	// RegionCode is the household's 12-digit village code.
	RegionCode string `json:"region_code,omitempty"`
	// IDType is 证件类型 (居民身份证, 残疾人证, …).
	IDType string `json:"id_type,omitempty"`
	// IDNo is 证件号码: 18 characters for 居民身份证, 20 digits for 残疾人证.
	IDNo string `json:"id_no,omitempty"`
	// Name is 姓名.
	Name string `json:"name,omitempty"`
	// Sex is 性别: 男 or 女.
	Sex string `json:"sex,omitempty"`
	// BirthDate is 出生日期 (YYYY-MM-DD).
	BirthDate string `json:"birth_date,omitempty"`
	// Ethnicity is 民族.
	Ethnicity string `json:"ethnicity,omitempty"`
	// RelationToHead is 与户主关系 (户主, 配偶, 之子, …).
	RelationToHead string `json:"relation_to_head,omitempty"`
	// Education is 文化程度.
	Education string `json:"education,omitempty"`
	// SchoolStatus is 在校生状况 (empty: not in school).
	SchoolStatus string `json:"school_status,omitempty"`
	// NotInSchoolReason is 义务教育阶段未上学原因.
	NotInSchoolReason string `json:"not_in_school_reason,omitempty"`
	// DropoutReason is 失学或辍学原因.
	DropoutReason string `json:"dropout_reason,omitempty"`
	// Health is 健康状况: 健康, 长期慢性病, 大病 or 残疾.
	Health string `json:"health,omitempty"`
	// DisabilityType is 残疾类别 (视力, 听力, 言语, 肢体, 智力, 精神, 多重).
	DisabilityType string `json:"disability_type,omitempty"`
	// DisabilityGrade is 残疾等级 (一级..四级).
	DisabilityGrade string `json:"disability_grade,omitempty"`
	// DisabilityCertNo is 残疾证号: the holder's ID number, the type digit and the grade
	// digit (20 characters); check it against the other fields.
	DisabilityCertNo string `json:"disability_cert_no,omitempty"`
	// LabourSkill is 劳动技能.
	LabourSkill string `json:"labour_skill,omitempty"`
	// WorkStatus is 务工状况.
	WorkStatus string `json:"work_status,omitempty"`
	// WorkPlace is 务工所在地.
	WorkPlace string `json:"work_place,omitempty"`
	// WorkMonths is 务工月数.
	WorkMonths int `json:"work_months,omitempty"`
	// WorkMonthlyIncome is 务工月收入 (yuan).
	WorkMonthlyIncome Decimal `json:"work_monthly_income,omitempty"`
	// EmploymentChannel is 就业渠道.
	EmploymentChannel string `json:"employment_channel,omitempty"`
	// PublicWelfareJob is 公益性岗位 (holds one).
	PublicWelfareJob *bool `json:"public_welfare_job,omitempty"`
	// PublicWelfareJobMonths is 公益性岗位月数.
	PublicWelfareJobMonths int `json:"public_welfare_job_months,omitempty"`
	// ResidentMedicalInsurance is 是否参加城乡居民基本医疗保险.
	ResidentMedicalInsurance *bool `json:"resident_medical_insurance,omitempty"`
	// EmployeeMedicalInsurance is 是否参加城镇职工基本医疗保险.
	EmployeeMedicalInsurance *bool `json:"employee_medical_insurance,omitempty"`
	// SeriousIllnessInsurance is 是否参加大病保险.
	SeriousIllnessInsurance *bool `json:"serious_illness_insurance,omitempty"`
	// ResidentPension is 是否参加城乡居民基本养老保险.
	ResidentPension *bool `json:"resident_pension,omitempty"`
	// EmployeePension is 是否参加城镇职工基本养老保险.
	EmployeePension *bool `json:"employee_pension,omitempty"`
	// MedicalAssistance is 是否接受医疗救助.
	MedicalAssistance *bool `json:"medical_assistance,omitempty"`
	// DibaoStatus is 享受低保政策情况.
	DibaoStatus string `json:"dibao_status,omitempty"`
	// TekunStatus is 享受特困供养政策情况.
	TekunStatus string `json:"tekun_status,omitempty"`
	// Phone is 家庭成员联系电话 (mobile).
	Phone string `json:"phone,omitempty"`
	// Deceased is 是否死亡.
	Deceased *bool `json:"deceased,omitempty"`
	// CancelledDate is 注销日期 (YYYY-MM-DD).
	CancelledDate string `json:"cancelled_date,omitempty"`
}

package schemas

// Household is the canonical household (户) with the national field set. Key is the
// national household number. Values of dictionary fields (household type, risk
// types, measure categories, …) are the national dictionary labels after mapping
// (e.g. "因病"), so they compare directly with national exports.
//
// Optional yes/no fields are *bool: nil means "not recorded", which supervision
// rules (e.g. Q-114, housing flag empty) must tell apart from "no". Decimal fields
// use "" for "not recorded".
type Household struct {
	Meta
	// HouseholdNo is 户编号, the national household number (unique, equals Key).
	HouseholdNo string `json:"household_no"`
	// RegionCode is the 12-digit region code used for scoping and roll-ups; for a
	// household it is the village code.
	RegionCode string `json:"region_code"`
	// VillageCode is the 12-digit NBS village code (村代码).
	VillageCode string `json:"village_code"`
	// CountyName is 县.
	CountyName string `json:"county_name,omitempty"`
	// TownshipName is 乡.
	TownshipName string `json:"township_name,omitempty"`
	// VillageName is 村.
	VillageName string `json:"village_name,omitempty"`
	// NaturalVillage is 自然村.
	NaturalVillage string `json:"natural_village,omitempty"`
	// HouseholdType is 户类型 (脱贫户, 监测户, …).
	HouseholdType string `json:"household_type,omitempty"`
	// MonitoringCategory is 监测对象类别: 1 脱贫不稳定户, 2 边缘易致贫户, 3 突发严重困难户,
	// 0 when the household is not a monitoring subject.
	MonitoringCategory int `json:"monitoring_category,omitempty"`
	// NoLabourSupported flags 整户无劳动能力兜底保障户 (never eliminated ).
	NoLabourSupported *bool `json:"no_labour_supported,omitempty"`
	// HeadName is 户主姓名.
	HeadName string `json:"head_name,omitempty"`
	// HeadIDNo is 户主证件号码, normalised (18 characters, upper-case X) or protected
	// as configured by the PII transform.
	HeadIDNo string `json:"head_id_no,omitempty"`
	// MemberCount is 人口数.
	MemberCount int `json:"member_count,omitempty"`
	// Phone is 户联系电话 (mobile).
	Phone string `json:"phone,omitempty"`
	// Risks are 致贫/返贫风险1..5 in slot order, empty slots dropped.
	Risks []string `json:"risks,omitempty"`
	// DisasterSubItem is 因自然灾害子项 (required when Risks holds 因自然灾害).
	DisasterSubItem string `json:"disaster_sub_item,omitempty"`
	// RiskRemark is the remark required with the risk 其他.
	RiskRemark string `json:"risk_remark,omitempty"`
	// IdentifiedYM is 识别监测时间 (YYYYMM).
	IdentifiedYM string `json:"identified_ym,omitempty"`
	// RiskEliminated is 风险是否已消除.
	RiskEliminated *bool `json:"risk_eliminated,omitempty"`
	// EliminationMethod is 风险消除方式: 帮扶消除 or 自然消除.
	EliminationMethod string `json:"elimination_method,omitempty"`
	// EliminatedYM is 消除监测时间 (YYYYMM).
	EliminatedYM string `json:"eliminated_ym,omitempty"`

	// AnnualIncome is 年收入 (yuan).
	AnnualIncome Decimal `json:"annual_income,omitempty"`
	// PerCapitaNetIncome is 人均纯收入 (yuan).
	PerCapitaNetIncome Decimal `json:"per_capita_net_income,omitempty"`
	// WageIncome is 工资性收入 (yuan).
	WageIncome Decimal `json:"wage_income,omitempty"`
	// BusinessIncome is 生产经营性收入 (yuan).
	BusinessIncome Decimal `json:"business_income,omitempty"`
	// PropertyIncome is 财产性收入 (yuan).
	PropertyIncome Decimal `json:"property_income,omitempty"`
	// TransferIncome is 转移性收入 (yuan).
	TransferIncome Decimal `json:"transfer_income,omitempty"`
	// BusinessExpense is 生产经营性支出 (yuan).
	BusinessExpense Decimal `json:"business_expense,omitempty"`
	// CompliantOutOfPocket is 合规自付支出 (yuan).
	CompliantOutOfPocket Decimal `json:"compliant_out_of_pocket,omitempty"`
	// DibaoAmount is 最低生活保障金 (yuan).
	DibaoAmount Decimal `json:"dibao_amount,omitempty"`
	// TekunAmount is 特困人员救助供养金 (yuan).
	TekunAmount Decimal `json:"tekun_amount,omitempty"`

	// ChildOutOfSchool is 是否义务教育阶段适龄儿童少年失学辍学.
	ChildOutOfSchool *bool `json:"child_out_of_school,omitempty"`
	// MemberUninsured is 是否有家庭成员未参加基本医疗保险.
	MemberUninsured *bool `json:"member_uninsured,omitempty"`
	// DangerousHouse is 是否危房户.
	DangerousHouse *bool `json:"dangerous_house,omitempty"`
	// SafeDrinkingWater is 是否解决安全饮用水.
	SafeDrinkingWater *bool `json:"safe_drinking_water,omitempty"`
	// HousingAreaM2 is 住房面积 (m²).
	HousingAreaM2 Decimal `json:"housing_area_m2,omitempty"`
	// HasElectricity is 是否通生活用电.
	HasElectricity *bool `json:"has_electricity,omitempty"`
	// RoadHardened is 入户道路是否硬化.
	RoadHardened *bool `json:"road_hardened,omitempty"`
	// DistanceToMainRoadKm is 与村主干路距离 (km).
	DistanceToMainRoadKm Decimal `json:"distance_to_main_road_km,omitempty"`

	// FarmlandMu is 耕地面积 (mu).
	FarmlandMu Decimal `json:"farmland_mu,omitempty"`
	// ForestLandMu is 林地面积 (mu).
	ForestLandMu Decimal `json:"forest_land_mu,omitempty"`
	// ReturnedFarmlandMu is 退耕还林面积 (mu).
	ReturnedFarmlandMu Decimal `json:"returned_farmland_mu,omitempty"`
	// OrchardMu is 林果面积 (mu).
	OrchardMu Decimal `json:"orchard_mu,omitempty"`
	// GrasslandMu is 牧草地面积 (mu).
	GrasslandMu Decimal `json:"grassland_mu,omitempty"`
	// WaterSurfaceMu is 水面面积 (mu).
	WaterSurfaceMu Decimal `json:"water_surface_mu,omitempty"`

	// Measures are the 帮扶措施 categories recorded for the household (the national
	// export has one column per category; a category is listed when filled). The
	// individual measures are AssistanceMeasure entities.
	Measures []string `json:"measures,omitempty"`
	// DevelopmentMeasureStatus is 实施开发式帮扶措施情况 (e.g. 尚未实施).
	DevelopmentMeasureStatus string `json:"development_measure_status,omitempty"`
	// MonitoringContact is 监测联系人.
	MonitoringContact string `json:"monitoring_contact,omitempty"`
	// MonitoringContactPhone is 监测联系人电话.
	MonitoringContactPhone string `json:"monitoring_contact_phone,omitempty"`
	// Collector is 信息采集人.
	Collector string `json:"collector,omitempty"`

	// Relocated is 易地扶贫搬迁.
	Relocated *bool `json:"relocated,omitempty"`
	// ResettlementSite is 安置点名称.
	ResettlementSite string `json:"resettlement_site,omitempty"`
	// ResettlementMode is 安置方式: 集中 or 分散.
	ResettlementMode string `json:"resettlement_mode,omitempty"`
}

package schemas

// AssistanceMeasure is one assistance measure (帮扶措施) given to a household or one
// of its members. Key is DeterministicID(household_no, category, item, start_ym)
// unless the source has its own measure number.
type AssistanceMeasure struct {
	Meta
	// HouseholdNo is the household's 户编号.
	HouseholdNo string `json:"household_no"`
	// PersonNo is the member's 人编号 when the measure is personal (e.g. 雨露计划).
	PersonNo string `json:"person_no,omitempty"`
	// RegionCode is the household's 12-digit village code.
	RegionCode string `json:"region_code,omitempty"`
	// Category is the national measure category (产业帮扶, 就业帮扶, 综合保障, …).
	Category string `json:"category"`
	// Item is the concrete measure inside the category (劳务输出, 低保, 雨露计划, …).
	Item string `json:"item,omitempty"`
	// Development is true for development-type help (开发式帮扶: 产业, 就业, 金融,
	// 公益岗位), which Q-077..Q-079 look for.
	Development bool `json:"development"`
	// ImplementationStatus is the implementation state (实施情况, e.g. 尚未实施).
	ImplementationStatus string `json:"implementation_status,omitempty"`
	// StartYM and EndYM bound the measure (YYYYMM; EndYM empty while running).
	StartYM string `json:"start_ym,omitempty"`
	EndYM   string `json:"end_ym,omitempty"`
	// Amount is the money involved (yuan), when any.
	Amount Decimal `json:"amount,omitempty"`
	// Note is free text from the source.
	Note string `json:"note,omitempty"`
}

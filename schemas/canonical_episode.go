package schemas

// Episode statuses. An eliminated episode stays in the data and keeps being updated
// (monitoring.md); a cancelled one was withdrawn (e.g. identified in error or the
// household was deregistered).
const (
	EpisodeMonitoring = "monitoring"
	EpisodeEliminated = "eliminated"
	EpisodeCancelled  = "cancelled"
)

// MonitoringEpisode is one period during which a household is a monitoring subject:
// from identification (识别监测) to risk elimination (风险消除). A household may have
// several episodes over the years. Key is HouseholdNo + "/" + IdentifiedYM.
type MonitoringEpisode struct {
	Meta
	// HouseholdNo is the household's 户编号.
	HouseholdNo string `json:"household_no"`
	// RegionCode is the household's 12-digit village code.
	RegionCode string `json:"region_code"`
	// IdentifiedYM is 识别监测时间 (YYYYMM).
	IdentifiedYM string `json:"identified_ym"`
	// Category is 监测对象类别: 1 脱贫不稳定户, 2 边缘易致贫户, 3 突发严重困难户.
	Category int `json:"category"`
	// Channel is how the risk was found (发现渠道): self_application, cadre_screening
	// or department_warning; empty when the source does not say.
	Channel string `json:"channel,omitempty"`
	// Risks are the risk types (致贫/返贫风险) of the episode.
	Risks []string `json:"risks,omitempty"`
	// DisasterSubItem is 因自然灾害子项.
	DisasterSubItem string `json:"disaster_sub_item,omitempty"`
	// Eliminated is 风险是否已消除.
	Eliminated bool `json:"eliminated"`
	// EliminationMethod is 风险消除方式: 帮扶消除 or 自然消除.
	EliminationMethod string `json:"elimination_method,omitempty"`
	// EliminatedYM is 消除监测时间 (YYYYMM).
	EliminatedYM string `json:"eliminated_ym,omitempty"`
	// Status is EpisodeMonitoring, EpisodeEliminated or EpisodeCancelled.
	Status string `json:"status"`
}

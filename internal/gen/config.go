// Package gen generates a synthetic but realistic Sichuan anti-return-to-poverty
// dataset: the national front-end tables (household, person, measure), department
// source data (医保, 残联, 住建, 民政, 公安, 教育, 应急) and a ground-truth manifest of every
// injected data-quality defect and department signal, so that rule engines and
// consistency checkers downstream can be measured exactly.
//
// Generation is deterministic: every village gets its own PCG stream derived from the
// seed and the village code, and output is emitted in village-code order, so the same
// seed and Config give byte-identical output whatever the number of workers. Work is
// streamed village by village; the province is never held in memory.
package gen

import (
	"errors"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// FullScaleHouseholds is the size of the real Sichuan base data (≈ 2.2 M 脱贫户 and
// monitored households, ≈ 7 M persons), used by `--scale full`.
const FullScaleHouseholds = 2_200_000

// Config holds every distribution, rate and threshold of the generator. Zero values are
// not meaningful: start from DefaultConfig and override (gen.yaml keys are the yaml tags).
type Config struct {
	// Seed makes the dataset reproducible.
	Seed uint64 `yaml:"seed"`
	// Households is the number of households to generate province-wide.
	Households int `yaml:"households"`
	// HouseholdsPerVillage is the typical density; with fewer households than villages ×
	// density, only a weighted sample of villages is populated.
	HouseholdsPerVillage int `yaml:"households_per_village"`
	// AsOf is the reference date: ages, monitoring months and 12-month windows end here.
	AsOf time.Time `yaml:"as_of"`
	// UpdatedAt stamps updated_at of generated rows (fixed, for determinism).
	UpdatedAt time.Time `yaml:"updated_at"`

	// PrefectureWeights weight villages by 4-digit prefecture code (default 1): the
	// former poverty areas (阿坝, 甘孜, 凉山, 秦巴) hold far more base-data households.
	PrefectureWeights map[string]float64 `yaml:"prefecture_weights"`
	// SizeWeights is the household-size distribution (index = size, 1..), SizeWeightsYi
	// the one for Yi households (large families common).
	SizeWeights   []float64 `yaml:"size_weights"`
	SizeWeightsYi []float64 `yaml:"size_weights_yi"`
	// Ethnic gives per prefecture (4 digits) or county (6 digits, wins) the ethnic mix of
	// households; unlisted places use EthnicDefault.
	Ethnic        map[string]map[string]float64 `yaml:"ethnic"`
	EthnicDefault map[string]float64            `yaml:"ethnic_default"`

	// MonitoredShare is the share of households that are monitored (监测对象), split over
	// categories 1/2/3 by CategoryWeights; EliminatedShare of them have their risk eliminated.
	MonitoredShare  float64    `yaml:"monitored_share"`
	CategoryWeights [3]float64 `yaml:"category_weights"`
	EliminatedShare float64    `yaml:"eliminated_share"`
	// RiskWeights weights the primary risk type of monitored households.
	RiskWeights map[string]float64 `yaml:"risk_weights"`
	// SecondRiskShare is the chance a monitored household has a second risk.
	SecondRiskShare float64 `yaml:"second_risk_share"`

	// Threshold is the year's monitoring income threshold (yuan per person per year).
	Threshold float64 `yaml:"threshold"`
	// IncomeMinPerCapita and IncomeMaxPerCapita bound clean per-capita net income (Q-100's range).
	IncomeMinPerCapita float64 `yaml:"income_min_per_capita"`
	IncomeMaxPerCapita float64 `yaml:"income_max_per_capita"`

	// ChronicShareElderly / ChronicShareAdult / SeriousShare / DisabledShare are health rates.
	ChronicShareElderly float64 `yaml:"chronic_share_elderly"`
	ChronicShareAdult   float64 `yaml:"chronic_share_adult"`
	SeriousShare        float64 `yaml:"serious_share"`
	DisabledShare       float64 `yaml:"disabled_share"`
	// MigrantIDShare is the share of persons whose ID was first registered in another county.
	MigrantIDShare float64 `yaml:"migrant_id_share"`
	// RelocatedShare is the share of households relocated (易地扶贫搬迁).
	RelocatedShare float64 `yaml:"relocated_share"`

	// DefectRates maps a Q-rule ("Q-003") to the probability that one eligible subject
	// (person or household) gets that defect. Unknown rules are rejected by Validate.
	DefectRates map[string]float64 `yaml:"defect_rates"`

	// Signals configures department data and warning signals.
	Signals SignalConfig `yaml:"signals"`

	// Push configures the weekly national push simulation.
	Push PushConfig `yaml:"push"`
}

// SignalConfig holds department-data rates and warning thresholds (departments.md): all
// of them vary by year and place, so they are configuration.
type SignalConfig struct {
	// OOPThreshold is the 12-month rolling in-scope out-of-pocket threshold for 脱贫/监测 persons.
	OOPThreshold float64 `yaml:"oop_threshold"`
	// OOPRate is the share of persons whose settlements exceed OOPThreshold (signal);
	// OOPNoiseRate the share just below it (expected false).
	OOPRate      float64 `yaml:"oop_rate"`
	OOPNoiseRate float64 `yaml:"oop_noise_rate"`
	// SettlementShare is the share of other persons with ordinary (low) settlements.
	SettlementShare float64 `yaml:"settlement_share"`
	// SevereDisabilityRate: healthy persons given a new grade 1–2 certificate.
	SevereDisabilityRate float64 `yaml:"severe_disability_rate"`
	// HousingCDRate: households recorded safe whose appraisal is grade C/D.
	HousingCDRate float64 `yaml:"housing_cd_rate"`
	// AppraisalShare: share of other households with an ordinary (A/B) appraisal.
	AppraisalShare float64 `yaml:"appraisal_share"`
	// AssistanceRate: persons of non-monitored households who newly receive 低保/特困/临时救助.
	AssistanceRate float64 `yaml:"assistance_rate"`
	// DeathRate: persons recorded alive whom 公安 reports dead.
	DeathRate float64 `yaml:"death_rate"`
	// DropoutRate: compulsory-age pupils whom 教育 reports as dropouts.
	DropoutRate float64 `yaml:"dropout_rate"`
	// DisasterRate: households with a major disaster loss ≥ DisasterLossThreshold;
	// DisasterNoiseRate: minor losses below it (expected false).
	DisasterRate          float64 `yaml:"disaster_rate"`
	DisasterNoiseRate     float64 `yaml:"disaster_noise_rate"`
	DisasterLossThreshold float64 `yaml:"disaster_loss_threshold"`
	// RecentMonths is how far back "new" department facts (certificates, recipients) date.
	RecentMonths int `yaml:"recent_months"`
}

// PushConfig configures `gen push`.
type PushConfig struct {
	// ChangeRate is the fraction of households whose rows really change in a week.
	ChangeRate float64 `yaml:"change_rate"`
	// NewHouseholdRate is the fraction (of households) of new households entering monitoring.
	NewHouseholdRate float64 `yaml:"new_household_rate"`
	// ChunkRows is the number of rows per DELETE/INSERT chunk in spread mode and per
	// LOAD DATA statement.
	ChunkRows int `yaml:"chunk_rows"`
	// SpreadDuration is how long a spread push takes overall.
	SpreadDuration time.Duration `yaml:"spread_duration"`
}

// DefaultConfig returns the documented defaults: a small demo province (2,000
// households) with 2023-like Sichuan distributions and 0.2 % per-rule defect rates.
func DefaultConfig() Config {
	rates := map[string]float64{}
	for _, r := range DefectRules {
		rates[r] = 0.002
	}
	return Config{
		Seed:                 1,
		Households:           2000,
		HouseholdsPerVillage: 64,
		AsOf:                 time.Date(2024, 6, 30, 0, 0, 0, 0, time.UTC),
		UpdatedAt:            time.Date(2024, 7, 1, 8, 0, 0, 0, time.UTC),
		PrefectureWeights: map[string]float64{
			"5132": 4, "5133": 4, "5134": 4.5, // 阿坝, 甘孜, 凉山
			"5119": 3, "5108": 3, "5117": 2.5, "5113": 2.5, // 巴中, 广元, 达州, 南充
		},
		SizeWeights:   []float64{0, 0.16, 0.22, 0.22, 0.20, 0.12, 0.05, 0.02, 0.01},
		SizeWeightsYi: []float64{0, 0.06, 0.10, 0.14, 0.18, 0.18, 0.14, 0.10, 0.06, 0.04},
		Ethnic: map[string]map[string]float64{
			"5134":   {"彝族": 0.52, "汉族": 0.45, "藏族": 0.01, "回族": 0.01, "傈僳族": 0.01},
			"5133":   {"藏族": 0.78, "汉族": 0.20, "彝族": 0.02},
			"5132":   {"藏族": 0.57, "羌族": 0.18, "汉族": 0.23, "回族": 0.02},
			"510726": {"羌族": 0.55, "汉族": 0.45}, // 北川
		},
		EthnicDefault:   map[string]float64{"汉族": 0.99, "土家族": 0.005, "苗族": 0.005},
		MonitoredShare:  0.12,
		CategoryWeights: [3]float64{0.45, 0.40, 0.15},
		EliminatedShare: 0.6,
		RiskWeights: map[string]float64{
			RiskIllness: 0.33, RiskDisability: 0.12, RiskSchooling: 0.07, RiskDisaster: 0.05,
			RiskAccident: 0.05, RiskProject: 0.03, RiskWork: 0.12, RiskLabour: 0.12,
			RiskHousing: 0.03, RiskWater: 0.02, RiskOther: 0.06,
		},
		SecondRiskShare:     0.25,
		Threshold:           7100,
		IncomeMinPerCapita:  4200,
		IncomeMaxPerCapita:  19500,
		ChronicShareElderly: 0.22,
		ChronicShareAdult:   0.05,
		SeriousShare:        0.015,
		DisabledShare:       0.04,
		MigrantIDShare:      0.03,
		RelocatedShare:      0.08,
		DefectRates:         rates,
		Signals: SignalConfig{
			OOPThreshold:          5000,
			OOPRate:               0.004,
			OOPNoiseRate:          0.004,
			SettlementShare:       0.08,
			SevereDisabilityRate:  0.002,
			HousingCDRate:         0.003,
			AppraisalShare:        0.2,
			AssistanceRate:        0.002,
			DeathRate:             0.002,
			DropoutRate:           0.003,
			DisasterRate:          0.003,
			DisasterNoiseRate:     0.003,
			DisasterLossThreshold: 10000,
			RecentMonths:          2,
		},
		Push: PushConfig{
			ChangeRate:       0.01,
			NewHouseholdRate: 0.001,
			ChunkRows:        20000,
			SpreadDuration:   30 * time.Second,
		},
	}
}

// LoadConfigFile overlays the YAML file at path on base (keys absent from the file keep
// base's value) and validates the result.
func LoadConfigFile(path string, base Config) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return base, fmt.Errorf("gen config: read %s: %w", path, err)
	}
	cfg := base
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return base, fmt.Errorf("gen config: parse %s: %w (keys are the snake_case names documented in internal/gen/config.go)", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return base, fmt.Errorf("gen config %s: %w", path, err)
	}
	return cfg, nil
}

// Validate reports every invalid setting with its YAML key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, a...)...))
	}
	if c.Households < 1 {
		bad("households", "must be at least 1, got %d", c.Households)
	}
	if c.HouseholdsPerVillage < 1 {
		bad("households_per_village", "must be at least 1, got %d", c.HouseholdsPerVillage)
	}
	if c.AsOf.IsZero() {
		bad("as_of", "must be set (e.g. 2024-06-30T00:00:00Z)")
	}
	if len(c.SizeWeights) < 2 || len(c.SizeWeightsYi) < 2 {
		bad("size_weights", "need weights for sizes 1.. (index 0 unused)")
	}
	share := func(key string, v float64) {
		if v < 0 || v > 1 {
			bad(key, "must be between 0 and 1, got %g", v)
		}
	}
	share("monitored_share", c.MonitoredShare)
	share("eliminated_share", c.EliminatedShare)
	share("second_risk_share", c.SecondRiskShare)
	share("migrant_id_share", c.MigrantIDShare)
	share("relocated_share", c.RelocatedShare)
	known := map[string]bool{}
	for _, r := range DefectRules {
		known[r] = true
	}
	for r, v := range c.DefectRates {
		if !known[r] {
			bad("defect_rates."+r, "unknown rule; supported: %v", DefectRules)
		}
		share("defect_rates."+r, v)
	}
	for k := range c.RiskWeights {
		if _, ok := riskKnown[k]; !ok {
			bad("risk_weights."+k, "unknown risk type")
		}
	}
	if c.Threshold <= 0 {
		bad("threshold", "must be positive, got %g", c.Threshold)
	}
	if c.IncomeMinPerCapita <= 0 || c.IncomeMaxPerCapita <= c.IncomeMinPerCapita {
		bad("income_min_per_capita", "need 0 < min < max, got %g..%g", c.IncomeMinPerCapita, c.IncomeMaxPerCapita)
	}
	s := c.Signals
	if s.OOPThreshold <= 0 {
		bad("signals.oop_threshold", "must be positive")
	}
	if s.DisasterLossThreshold <= 0 {
		bad("signals.disaster_loss_threshold", "must be positive")
	}
	if s.RecentMonths < 1 {
		bad("signals.recent_months", "must be at least 1")
	}
	share("push.change_rate", c.Push.ChangeRate)
	share("push.new_household_rate", c.Push.NewHouseholdRate)
	if c.Push.ChunkRows < 1 {
		bad("push.chunk_rows", "must be at least 1")
	}
	return errors.Join(errs...)
}

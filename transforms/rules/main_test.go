package rules

import (
	"testing"

	"github.com/shouwang/shouwang/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

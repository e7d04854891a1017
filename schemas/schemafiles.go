package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
)

// schemaFS holds the versioned JSON Schema files. They are embedded so that every
// binary can validate and describe the exact contracts it was built with.
//
//go:embed json/*.json
var schemaFS embed.FS

// schemaFileName matches "<name>.v<version>.json".
var schemaFileName = regexp.MustCompile(`^([a-z0-9_]+)\.v([1-9][0-9]*)\.json$`)

// SchemaFile returns the JSON Schema file of one schema version, e.g.
// SchemaFile("household", 1) is schemas/json/household.v1.json.
func SchemaFile(name string, version int) ([]byte, error) {
	path := fmt.Sprintf("json/%s.v%d.json", name, version)
	b, err := schemaFS.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("schemas: no schema file schemas/%s (known versions of %q: %v): %w",
			path, name, SchemaVersions(name), err)
	}
	return b, nil
}

// SchemaNames lists the names that have at least one schema file, sorted.
func SchemaNames() []string {
	var names []string
	for name := range schemaIndex() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// SchemaVersions lists the versions of one schema name, ascending (nil if unknown).
func SchemaVersions(name string) []int {
	return schemaIndex()[name]
}

// schemaIndex maps each schema name to its sorted versions. The embedded directory
// is small, so it is rebuilt on demand rather than cached in a global.
func schemaIndex() map[string][]int {
	entries, err := fs.ReadDir(schemaFS, "json")
	if err != nil {
		// The directory is embedded at build time; failing to read it is a build bug.
		panic(fmt.Sprintf("schemas: read embedded schema directory: %v", err))
	}
	idx := map[string][]int{}
	for _, e := range entries {
		m := schemaFileName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		v, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		idx[m[1]] = append(idx[m[1]], v)
	}
	for _, vs := range idx {
		slices.Sort(vs)
	}
	return idx
}

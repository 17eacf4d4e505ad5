package deploy_test

// Checks deploy/monitoring: the Grafana dashboard's structure and that each of its queries is
// valid PromQL (promtool parses them), that the dashboard and alert rules only name metrics listed
// in metrics.txt (the e2e test checks the "exported" ones against the running daemon), that every
// alert carries a severity, summary and description, and that the Prometheus Operator's
// PrometheusRule carries exactly alerts.yaml's groups (`go test ./... -update` rewrites it).

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false,
	"rewrite deploy/components/prometheus-operator/prometheusrule.yaml from deploy/monitoring/alerts.yaml")

var (
	alertsPath         = filepath.Join(repoRoot, "deploy", "monitoring", "alerts.yaml")
	dashboardPath      = filepath.Join(repoRoot, "deploy", "monitoring", "dashboard.json")
	metricsListPath    = filepath.Join(repoRoot, "deploy", "monitoring", "metrics.txt")
	prometheusRulePath = filepath.Join(repoRoot, "deploy", "components", "prometheus-operator", "prometheusrule.yaml")
	metricNameRE       = regexp.MustCompile(`\bworkflowd_[a-z0-9_]+`)
)

func loadAlerts(t *testing.T) RuleFile {
	t.Helper()
	text, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(text)
	if err != nil {
		t.Fatalf("%s: %v", alertsPath, err)
	}
	var rf RuleFile
	if err := decodeStrict(raw, &rf); err != nil {
		t.Fatalf("%s does not decode strictly as a rule file: %v", alertsPath, err)
	}
	return rf
}

const prometheusRuleHeader = `# Generated from deploy/monitoring/alerts.yaml by ` + "`go test ./... -update`" + ` in tests/deploy;
# edit alerts.yaml, not this file (tests/deploy fails when they differ).
`

func TestPrometheusRuleMatchesAlerts(t *testing.T) {
	alerts := loadAlerts(t)
	if *update {
		pr := PrometheusRule{Spec: alerts}
		pr.APIVersion, pr.Kind = "monitoring.coreos.com/v1", "PrometheusRule"
		pr.Name = "workflowd"
		pr.Labels = map[string]string{"app.kubernetes.io/name": "workflowd"}
		out, err := yaml.Marshal(pr)
		if err != nil {
			t.Fatal(err)
		}
		// metav1.ObjectMeta has no omitempty on creationTimestamp.
		out = []byte(strings.Replace(string(out), "  creationTimestamp: null\n", "", 1))
		if err := os.WriteFile(prometheusRulePath, append([]byte(prometheusRuleHeader), out...), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", prometheusRulePath)
	}
	text, err := os.ReadFile(prometheusRulePath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(text)
	if err != nil {
		t.Fatal(err)
	}
	var pr PrometheusRule
	if err := decodeStrict(raw, &pr); err != nil {
		t.Fatalf("%s: %v", prometheusRulePath, err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Fatalf("%s: not a monitoring.coreos.com/v1 PrometheusRule", prometheusRulePath)
	}
	got, _ := json.Marshal(pr.Spec)
	want, _ := json.Marshal(alerts)
	if string(got) != string(want) {
		t.Fatalf("%s differs from %s: run `go test ./... -update` in tests/deploy", prometheusRulePath, alertsPath)
	}
}

func TestAlertRulesAreComplete(t *testing.T) {
	names := map[string]bool{}
	for _, g := range loadAlerts(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if names[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			names[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s: severity label %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: needs summary and description annotations", r.Alert)
			}
		}
	}
	// The alerts the deployment documentation promises.
	for _, want := range []string{"WorkflowdDown", "WorkflowdConsumerPaused", "WorkflowdConsumerLagGrowing",
		"WorkflowdDeadLetterRateHigh", "WorkflowdProviderErrors", "WorkflowdExecutionsStuckPending",
		"WorkflowdExecutionsStuckRunning"} {
		if !names[want] {
			t.Errorf("alert %s is missing from %s", want, alertsPath)
		}
	}
}

// --- dashboard ----------------------------------------------------------------------------------

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Schema     int     `json:"schemaVersion"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	text, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(text, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// The dashboard's PromQL with Grafana's variables replaced by values Prometheus accepts.
func dashboardQueries(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	r := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", "workflowd",
		"$instance", ".*", "${datasource}", "prometheus")
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %d %q query %s", p.ID, p.Title, tg.RefID)] = r.Replace(tg.Expr)
		}
	}
	return out
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.Schema < 36 {
		t.Errorf("dashboard needs uid, title and a current schemaVersion (got %q %q %d)", d.UID, d.Title, d.Schema)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["instance"] != "query" {
		t.Errorf("dashboard needs the template variables datasource, job and instance; has %v", vars)
	}
	ids := map[int]bool{}
	var cells [][24]bool
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("panel %d %q: gridPos %+v outside the 24-column grid", p.ID, p.Title, g)
			continue
		}
		for len(cells) < g.Y+g.H {
			cells = append(cells, [24]bool{})
		}
		for y := g.Y; y < g.Y+g.H; y++ {
			for x := g.X; x < g.X+g.W; x++ {
				if cells[y][x] {
					t.Errorf("panel %d %q overlaps another panel at (%d,%d)", p.ID, p.Title, x, y)
				}
				cells[y][x] = true
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %d %q must use the prometheus datasource variable ${datasource}", p.ID, p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no query", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %d %q: every query needs an expr and a unique refId", p.ID, p.Title)
			}
			refs[tg.RefID] = true
			if strings.Contains(tg.Expr, "workflowd_") && !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %d %q: query ignores the instance variable: %s", p.ID, p.Title, tg.Expr)
			}
		}
	}
	// The panels the deployment documentation promises.
	titles := map[string]bool{}
	for _, p := range d.Panels {
		titles[p.Title] = true
	}
	for _, want := range []string{"Throughput", "Consumer lag by topic", "Dead letters by reason",
		"Executions by state", "State transitions by provider and state", "Start latency",
		"Execution duration by provider", "Database errors", "Provider errors"} {
		if !titles[want] {
			t.Errorf("dashboard has no panel %q", want)
		}
	}
}

// Every dashboard query goes through Prometheus' own parser: promtool checks a rule file that
// records each query.
func TestDashboardQueriesAreValidPromQL(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found: install Debian's prometheus package (scripts/install-deps.sh does)")
	}
	queries := dashboardQueries(t, loadDashboard(t))
	keys := make([]string, 0, len(queries))
	for k := range queries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, k := range keys {
		expr, _ := json.Marshal(queries[k])
		fmt.Fprintf(&b, "      # %s\n      - record: dashboard:query_%d\n        expr: %s\n", k, i, expr)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dashboard queries are not valid PromQL:\n%s\n%s", out, b.String())
	}
}

// --- metric names -----------------------------------------------------------------------------

func loadMetricsList(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(metricsListPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	list := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 || (fields[1] != "exported" && fields[1] != "sparse" && fields[1] != "upcoming") {
			t.Fatalf("%s:%d: want \"<metric> exported|sparse|upcoming\", got %q", metricsListPath, n, line)
		}
		list[fields[0]] = fields[1]
	}
	return list
}

// The metric family a sample name belongs to (histogram series carry _bucket/_sum/_count).
func family(name string, known map[string]string) string {
	if _, ok := known[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base := strings.TrimSuffix(name, suffix); base != name {
			if _, ok := known[base]; ok {
				return base
			}
		}
	}
	return name
}

func TestMonitoringUsesOnlyListedMetrics(t *testing.T) {
	known := loadMetricsList(t)
	used := map[string][]string{} // family -> where
	note := func(where, expr string) {
		for _, m := range metricNameRE.FindAllString(expr, -1) {
			f := family(m, known)
			used[f] = append(used[f], where)
		}
	}
	for _, g := range loadAlerts(t).Groups {
		for _, r := range g.Rules {
			note("alert "+r.Alert, r.Expr)
		}
	}
	d := loadDashboard(t)
	for where, expr := range dashboardQueries(t, d) {
		note("dashboard "+where, expr)
	}
	for _, v := range d.Templating.List {
		note("dashboard variable "+v.Name, fmt.Sprint(v.Query))
	}
	for name, where := range used {
		if _, ok := known[name]; !ok {
			t.Errorf("%s names %s, which %s does not list (a typo, or add it as exported/upcoming)",
				strings.Join(where, ", "), name, metricsListPath)
		}
	}
	for name := range known {
		if len(used[name]) == 0 {
			t.Errorf("%s lists %s but neither the dashboard nor the alerts use it", metricsListPath, name)
		}
	}
}

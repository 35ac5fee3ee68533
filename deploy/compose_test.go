package deploy_test

import (
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// composeService is the part of a docker-compose.yml service the tests read.
type composeService struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	PullPolicy  string         `yaml:"pull_policy"`
	Restart     string         `yaml:"restart"`
	Ports       []string       `yaml:"ports"`
	Volumes     []string       `yaml:"volumes"`
	Environment map[string]any `yaml:"environment"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

func composeFile(t *testing.T) (services map[string]composeService, volumes map[string]any) {
	t.Helper()
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	// depends_on is a list in some services and a map in others; read the
	// map form only where it is one.
	var loose struct {
		Services map[string]map[string]any `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &loose))
	services = map[string]composeService{}
	for name, s := range loose.Services {
		if _, ok := s["depends_on"].([]any); ok {
			delete(s, "depends_on")
		}
		b, err := yaml.Marshal(s)
		require.NoError(t, err)
		var svc composeService
		require.NoError(t, yaml.Unmarshal(b, &svc), "service %s", name)
		services[name] = svc
	}
	require.NotEmpty(t, services)
	return services, loose.Volumes
}

// oneShot returns the services others wait for to complete: they run once.
func oneShot(services map[string]composeService) map[string]bool {
	out := map[string]bool{}
	for _, s := range services {
		for dep, d := range s.DependsOn {
			if d.Condition == "service_completed_successfully" {
				out[dep] = true
			}
		}
	}
	return out
}

// The postgres healthcheck must go over TCP: on an empty volume the image's
// first start runs a temporary server on the Unix socket only, and a
// socket check turns healthy before migrate can connect to postgres:5432.
func TestCompose_PostgresHealthcheckUsesTCP(t *testing.T) {
	services, _ := composeFile(t)
	check := strings.Join(services["postgres"].Healthcheck.Test, " ")
	require.Contains(t, check, "pg_isready")
	require.Regexp(t, `\s-h\s+127\.0\.0\.1\b`, check, "pg_isready must check over TCP")
	require.Equal(t, "service_healthy", services["migrate"].DependsOn["postgres"].Condition)
}

// Every long-running service has the same restart policy, so a Docker
// restart brings back the databases with the applications; the one-shot
// services do not restart.
func TestCompose_OneRestartPolicyForLongRunningServices(t *testing.T) {
	services, _ := composeFile(t)
	once := oneShot(services)
	require.True(t, once["migrate"] && once["topics"], "one-shot services: %v", once)
	policies := map[string][]string{}
	for name, s := range services {
		if once[name] {
			require.Contains(t, []string{"", "no"}, s.Restart, "one-shot service %s must not restart", name)
			continue
		}
		policies[s.Restart] = append(policies[s.Restart], name)
	}
	require.Len(t, policies, 1, "long-running services by restart policy: %v", policies)
	require.NotContains(t, policies, "", "long-running services without a restart policy: %v", policies[""])
}

// Kafka keeps its log (topics, group offsets) on the volume: the image
// writes server.properties from the KAFKA_* variables alone, so without
// KAFKA_LOG_DIRS the data lands in /tmp/kafka-logs inside the container.
func TestCompose_KafkaLogDirIsOnTheVolume(t *testing.T) {
	services, volumes := composeFile(t)
	kafka := services["kafka"]
	logDirs, _ := kafka.Environment["KAFKA_LOG_DIRS"].(string)
	require.NotEmpty(t, logDirs, "KAFKA_LOG_DIRS")
	for _, dir := range strings.Split(logDirs, ",") {
		onVolume := false
		for _, v := range kafka.Volumes {
			source, target, _ := strings.Cut(v, ":")
			target, _, _ = strings.Cut(target, ":")
			if _, named := volumes[source]; named && (dir == target || strings.HasPrefix(dir, target+"/")) {
				onVolume = true
			}
		}
		require.True(t, onVolume, "Kafka log dir %s is on no named volume of the kafka service (%v)", dir, kafka.Volumes)
	}
}

// Published ports listen on the loopback interface only: the stack's
// credentials are for development.
func TestCompose_PortsBindToLoopback(t *testing.T) {
	services, _ := composeFile(t)
	for name, s := range services {
		for _, p := range s.Ports {
			require.True(t, strings.HasPrefix(p, "127.0.0.1:"), "service %s publishes %q on every interface", name, p)
		}
	}
}

// The local image is built by one service and never pulled by the others
// (there is no pulsebus:local in any registry).
func TestCompose_LocalImageIsBuiltOnceAndNeverPulled(t *testing.T) {
	services, _ := composeFile(t)
	var builders []string
	for name, s := range services {
		if s.Image != "pulsebus:local" {
			continue
		}
		if s.Build != nil {
			builders = append(builders, name)
		} else {
			require.Equal(t, "never", s.PullPolicy, "service %s uses pulsebus:local without building it", name)
		}
	}
	require.Equal(t, []string{"migrate"}, builders)
}

// Grafana finds every provisioning folder it reads.
func TestCompose_GrafanaProvisioningFoldersExist(t *testing.T) {
	for _, dir := range []string{"dashboards", "datasources", "plugins", "alerting"} {
		info, err := os.Stat(path.Join("grafana/provisioning", dir))
		require.NoError(t, err)
		require.True(t, info.IsDir())
	}
}

// Prometheus looks the relay and consumer replicas up every few seconds, so
// a restarted replica (a new address) is scraped at once.
func TestPrometheus_DiscoveryRefreshesQuickly(t *testing.T) {
	raw, err := os.ReadFile("prometheus/prometheus.yml")
	require.NoError(t, err)
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
			DNSSD   []struct {
				RefreshInterval string `yaml:"refresh_interval"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	for _, f := range cfg.RuleFiles {
		require.False(t, path.IsAbs(f), "rule file %s: relative to prometheus.yml, so promtool check config finds it", f)
		_, err := os.Stat(path.Join("prometheus", f))
		require.NoError(t, err)
	}
	require.NotEmpty(t, cfg.ScrapeConfigs)
	for _, sc := range cfg.ScrapeConfigs {
		for _, sd := range sc.DNSSD {
			d, err := time.ParseDuration(sd.RefreshInterval)
			require.NoError(t, err, "job %s: refresh_interval (the default is 30s)", sc.JobName)
			require.LessOrEqual(t, d, 10*time.Second, "job %s", sc.JobName)
		}
	}
}

// The Dockerfile caches modules and builds, and declares no build argument
// it does not use.
func TestDockerfile_CachesAndUsesEveryArg(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	dockerfile := string(raw)
	require.Contains(t, dockerfile, "--mount=type=cache,target=/go/pkg/mod")
	require.Contains(t, dockerfile, "--mount=type=cache,target=/root/.cache/go-build")
	args := regexp.MustCompile(`(?m)^ARG\s+([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(dockerfile, -1)
	for _, a := range args {
		uses := regexp.MustCompile(`\$\{?`+a[1]+`\b`).FindAllString(dockerfile, -1)
		require.NotEmpty(t, uses, "ARG %s is never used", a[1])
	}
	require.True(t, slices.ContainsFunc(args, func(a []string) bool { return a[1] == "VCS_REVISION" }))
}

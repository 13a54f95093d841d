package tracing

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Exporters names the exporters the environment asks for, as an OTel SDK
// reads it: none when OTEL_SDK_DISABLED is true; else those OTEL_TRACES_EXPORTER
// lists ("otlp", "console"; "none" for none); else "otlp" when an OTLP
// endpoint is set. Tracing is off, at no cost, when the list is empty.
func Exporters(getenv func(string) string) ([]string, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	list := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if list == "" {
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			return []string{"otlp"}, nil
		}
		return nil, nil
	}
	var names []string
	for _, name := range strings.Split(list, ",") {
		switch name = strings.TrimSpace(name); name {
		case "none":
			return nil, nil
		case "otlp", "console":
			names = append(names, name)
		default:
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not an exporter stq has (otlp, console or none)", name)
		}
	}
	return names, nil
}

// FromEnv returns a Tracer configured by the standard OTEL_* variables, or
// nil when they ask for no traces. The OTLP exporters read the endpoint,
// headers, timeout, compression and TLS variables themselves; the protocol
// (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL) is
// "http/protobuf" (the default), "http/json" or "grpc". The resource's service.name is
// "stq" unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise;
// the sampler and batching follow OTEL_TRACES_SAMPLER and OTEL_BSP_*.
// console writes spans to w.
func FromEnv(ctx context.Context, version string, w io.Writer) (*Tracer, error) {
	names, err := Exporters(os.Getenv)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	res, err := newResource(ctx, version)
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, name := range names {
		exp, err := newExporter(ctx, name, w)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return New(opts...), nil
}

func newExporter(ctx context.Context, name string, w io.Writer) (sdktrace.SpanExporter, error) {
	if name == "console" {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("console trace exporter: %w", err)
		}
		return exp, nil
	}
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch strings.TrimSpace(proto) {
	case "", "http/protobuf", "http/json": // the exporter reads which itself
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: stq speaks http/protobuf, http/json and grpc", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, nil
}

// newResource describes the daemon: the SDK's defaults, then stq's name and
// version, then what OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES say,
// each overriding the one before.
func newResource(ctx context.Context, version string) (*resource.Resource, error) {
	env, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("trace resource from OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	own := resource.NewSchemaless(attribute.String("service.name", "stq"), attribute.String("service.version", version))
	res, err := resource.Merge(resource.Default(), own)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	if res, err = resource.Merge(res, env); err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return res, nil
}

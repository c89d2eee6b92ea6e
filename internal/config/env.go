package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment override. A field's variable is the
// prefix plus its YAML path in upper case joined by '_':
// kafka.sasl.password is FANOUT_KAFKA_SASL_PASSWORD, mongo.uri is
// FANOUT_MONGO_URI. Lists are comma-separated. Maps (connectors, routing
// rules) have no overrides: their secrets use *_env fields instead.
const EnvPrefix = "FANOUT_"

var durationType = reflect.TypeOf(time.Duration(0))

// ApplyEnv applies the environment overrides to cfg.
func ApplyEnv(cfg *Config, getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	var e Errors
	walkEnv(reflect.ValueOf(cfg).Elem(), strings.TrimSuffix(EnvPrefix, "_"), "", getenv, &e)
	if len(e.List) > 0 {
		return &e
	}
	return nil
}

// EnvNames lists every environment variable that overrides a field, for
// documentation and `fanout config env`.
func EnvNames() []string {
	var names []string
	var walk func(t reflect.Type, env string)
	walk = func(t reflect.Type, env string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			name := env + "_" + strings.ToUpper(tag)
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != durationType:
				walk(f.Type, name)
			case f.Type.Kind() == reflect.Map, f.Type.Kind() == reflect.Pointer:
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() != reflect.String:
			default:
				names = append(names, name)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), strings.TrimSuffix(EnvPrefix, "_"))
	return names
}

func walkEnv(v reflect.Value, env, path string, getenv func(string) string, e *Errors) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := env + "_" + strings.ToUpper(tag)
		field := strings.TrimPrefix(path+"."+tag, ".")
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			walkEnv(fv, name, field, getenv, e)
			continue
		}
		raw := getenv(name)
		if raw == "" {
			continue
		}
		if err := setFromString(fv, raw); err != nil {
			e.add(field, fmt.Sprintf("environment variable %s: %v", name, err), "fix or unset "+name)
		}
	}
}

func setFromString(v reflect.Value, raw string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 500ms or 10s", raw)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		v.SetBool(b)
	case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		v.SetInt(n)
	case v.Kind() >= reflect.Uint && v.Kind() <= reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a non-negative integer", raw)
		}
		v.SetUint(n)
	case v.Kind() == reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		v.SetFloat(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

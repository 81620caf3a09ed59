package api

import (
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

func validateServiceProfile(o Object) FieldErrors {
	sp := o.(*ServiceProfile)
	var errs FieldErrors
	names := map[string]bool{}
	for i, r := range sp.Spec.Routes {
		p := fmt.Sprintf("spec.routes[%d]", i)
		if r.Name == "" {
			errs.Add(p+".name", "required")
		} else if names[r.Name] {
			errs.Add(p+".name", "duplicate route name %q", r.Name)
		}
		names[r.Name] = true
		if r.Condition == nil {
			errs.Add(p+".condition", "required")
		} else {
			validateRequestMatch(r.Condition, p+".condition", &errs)
		}
		if r.Timeout != "" {
			if _, err := ParseDuration(r.Timeout); err != nil {
				errs.Add(p+".timeout", "%v", err)
			}
		}
		for j, rc := range r.ResponseClasses {
			rp := fmt.Sprintf("%s.responseClasses[%d].condition", p, j)
			if rc == nil || rc.Condition == nil {
				errs.Add(rp, "required")
				continue
			}
			validateResponseMatch(rc.Condition, rp, &errs)
		}
	}
	for i, d := range sp.Spec.DstOverrides {
		p := fmt.Sprintf("spec.dstOverrides[%d]", i)
		if d == nil {
			errs.Add(p, "must not be null")
			continue
		}
		if d.Authority == "" {
			errs.Add(p+".authority", "required: a service authority such as web.faces.svc.cluster.local:80")
		}
		switch q, err := resource.ParseQuantity(d.Weight); {
		case d.Weight == "":
			errs.Add(p+".weight", "required")
		case err != nil:
			errs.Add(p+".weight", "invalid weight %q: want a quantity such as 1, 100m or 500m", d.Weight)
		case q.Sign() < 0:
			errs.Add(p+".weight", "must not be negative")
		}
	}
	for i, port := range sp.Spec.OpaquePorts {
		if _, _, err := ParseOpaquePorts(port); err != nil || port == "" {
			errs.Add(fmt.Sprintf("spec.opaquePorts[%d]", i), "invalid port %q: want a port number or range such as 3306 or 4000-4100", port)
		}
	}
	if b := sp.Spec.RetryBudget; b != nil {
		if b.RetryRatio < 0 {
			errs.Add("spec.retryBudget.retryRatio", "must not be negative")
		}
		if _, err := ParseDuration(b.TTL); err != nil {
			errs.Add("spec.retryBudget.ttl", "%v", err)
		}
	}
	return errs
}

func validateRequestMatch(m *RequestMatch, path string, errs *FieldErrors) {
	set := 0
	if len(m.All) > 0 {
		set++
		for i, c := range m.All {
			validateRequestMatch(c, fmt.Sprintf("%s.all[%d]", path, i), errs)
		}
	}
	if len(m.Any) > 0 {
		set++
		for i, c := range m.Any {
			validateRequestMatch(c, fmt.Sprintf("%s.any[%d]", path, i), errs)
		}
	}
	if m.Not != nil {
		set++
		validateRequestMatch(m.Not, path+".not", errs)
	}
	if m.PathRegex != "" {
		set++
		if _, err := regexp.Compile(m.PathRegex); err != nil {
			errs.Add(path+".pathRegex", "invalid regular expression: %v", err)
		}
	}
	if m.Method != "" {
		set++
		if strings.IndexFunc(m.Method, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) }) >= 0 {
			errs.Add(path+".method", "invalid HTTP method %q", m.Method)
		}
	}
	if set == 0 {
		errs.Add(path, "empty condition: set one of all, any, not, pathRegex, method")
	}
}

func validateResponseMatch(m *ResponseMatch, path string, errs *FieldErrors) {
	set := 0
	for i, c := range m.All {
		set++
		validateResponseMatch(c, fmt.Sprintf("%s.all[%d]", path, i), errs)
	}
	for i, c := range m.Any {
		set++
		validateResponseMatch(c, fmt.Sprintf("%s.any[%d]", path, i), errs)
	}
	if m.Not != nil {
		set++
		validateResponseMatch(m.Not, path+".not", errs)
	}
	if r := m.Status; r != nil {
		set++
		switch {
		case r.Min != 0 && (r.Min < 100 || r.Min > 599):
			errs.Add(path+".status.min", "%d is not an HTTP status (100-599)", r.Min)
		case r.Max != 0 && (r.Max < 100 || r.Max > 599):
			errs.Add(path+".status.max", "%d is not an HTTP status (100-599)", r.Max)
		case r.Min != 0 && r.Max != 0 && r.Max < r.Min:
			errs.Add(path+".status", "max %d is below min %d", r.Max, r.Min)
		}
	}
	if set == 0 {
		errs.Add(path, "empty condition: set one of all, any, not, status")
	}
}

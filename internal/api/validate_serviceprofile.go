package api

import (
	"fmt"
	"regexp"
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
	}
	if set == 0 {
		errs.Add(path, "empty condition: set one of all, any, not, pathRegex, method")
	}
}

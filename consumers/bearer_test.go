package consumers

import "testing"

func TestStripBearer(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Bearer k", "k"},
		{"bearer k", "k"},
		{"BEARER k", "k"},
		{"BeArEr k", "k"},
		{"Bearer\tk", "k"},
		{"Bearer    k", "k"},
		{"Bearer k with space", "k with space"},
		{"k", "k"}, // bare
		{"Bearerk", "Bearerk"},
		{"Bearer-k", "Bearer-k"},
		{"Bear k", "Bear k"},
		{"Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"},
		{"Bearer", ""},
		{"Bearer ", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := StripBearer(tt.in); got != tt.want {
			t.Errorf("StripBearer(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = StripBearer("Bearer k") }); n != 0 {
		t.Errorf("StripBearer allocates %v times", n)
	}
}

package exec

import (
	"os"
	osexec "os/exec"
	"testing"
)

func TestAliveKnowsAProcessByItsStartTime(t *testing.T) {
	p := Processes{}
	self, err := p.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Alive(os.Getpid(), self) {
		t.Error("this process is not alive by its own start time")
	}
	if p.Alive(os.Getpid(), self-StartTolerance-60000) {
		t.Error("a reused PID (another start time) counts as alive")
	}
	cmd := osexec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if p.Alive(cmd.Process.Pid, self) {
		t.Error("an exited process counts as alive")
	}
}

using System.Diagnostics;
using Appliance.Fs.Session;
using Appliance.Fs.TestFs;
using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

/// <summary>Every backend call is bounded: a hung call answers the kernel by its deadline, interrupts answer at once.</summary>
public class DeadlineTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task A_hung_backend_call_fails_with_ETIMEDOUT_and_the_mount_keeps_working()
    {
        var fs = new MemoryFileSystem
        {
            // Hangs forever on this name and ignores its cancellation token: only the session's deadline helps.
            Gate = (_, name, _) => name == "hang" ? new TaskCompletionSource().Task : Task.CompletedTask,
        };
        await using var m = TestMount.Start(fs, new FuseOptions { OperationTimeout = TimeSpan.FromMilliseconds(500) });
        File.WriteAllText(m.P("fine"), "ok");
        var errno = await Task.Run(() => Errnos.Of(() => Posix.lstatx(m.P("hang")))).WaitAsync(Bound);
        Assert.Equal(110, errno); // ETIMEDOUT
        Assert.Equal(1, m.Session.Timeouts);
        Assert.Equal("ok", File.ReadAllText(m.P("fine")));
        // A write whose backend hangs: the writer gets an error, not an endless wait.
        fs.Gate = (op, _, _) => op == "write" ? new TaskCompletionSource().Task : Task.CompletedTask;
        var fd = Posix.open(m.P("fine"), Constants.O_WRONLY);
        try
        {
            var writeErrno = await Task.Run(() => Errnos.Of(() => Posix.pwrite(fd, "x"u8, 0))).WaitAsync(Bound);
            Assert.Equal(110, writeErrno);
        }
        finally
        {
            Posix.close(fd);
        }
    }

    [Fact]
    public async Task A_late_lookup_answer_gives_its_lookup_back()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fs = new MemoryFileSystem { Gate = (_, name, _) => name == "late" ? release.Task : Task.CompletedTask };
        await using var m = TestMount.Start(fs, new FuseOptions { OperationTimeout = TimeSpan.FromMilliseconds(300) });
        // Another client creates "late" through the API, behind the kernel's back; it then drops its own lookup.
        var ctx = new Appliance.Fs.Api.FuseContext(0, 0, 0, 0);
        var created = await fs.CreateAsync(ctx, 1, "late", 0x81A4, 0, default);
        Assert.True(created.IsOk);
        var ino = created.Value.Entry.NodeId;
        await fs.ReleaseAsync(ctx, ino, created.Value.Open.Handle, default);
        fs.Forget(ino, 1);
        Assert.Equal(0UL, fs.LookupCount(ino));

        var errno = await Task.Run(() => Errnos.Of(() => Posix.lstatx(m.P("late")))).WaitAsync(Bound);
        Assert.Equal(110, errno); // the kernel was answered ETIMEDOUT: it holds no lookup of "late"
        release.SetResult(); // now the backend answers, with an entry that counts one lookup
        var deadline = DateTime.UtcNow + Bound;
        while (m.Session.LateAnswers == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
        Assert.Equal(1, m.Session.LateAnswers);
        Assert.Equal(0UL, fs.LookupCount(ino)); // given back by the session, or it would leak forever
        fs.Gate = null;
        Assert.Equal(ino, Posix.lstatx(m.P("late")).stx_ino);
    }

    [Fact]
    public async Task An_interrupted_caller_is_answered_EINTR_at_once()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fs = new MemoryFileSystem
        {
            Gate = (_, name, ct) =>
            {
                if (name != "slow")
                {
                    return Task.CompletedTask;
                }
                entered.TrySetResult();
                return Task.Delay(Timeout.Infinite, ct); // honours cancellation
            },
        };
        await using var m = TestMount.Start(fs, new FuseOptions { OperationTimeout = TimeSpan.FromMinutes(10) });
        using var stat = Process.Start(new ProcessStartInfo("stat", m.P("slow")) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        await entered.Task.WaitAsync(Bound);
        Shell.Ok($"kill -INT {stat.Id}");
        await stat.WaitForExitAsync().WaitAsync(Bound);
        var deadline = DateTime.UtcNow + Bound;
        while (m.Session.Interrupts == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
        Assert.Equal(1, m.Session.Interrupts);
        Assert.Equal(0, m.Session.Timeouts);
    }

    [Fact]
    public async Task An_interrupted_write_is_not_answered_EINTR_it_finishes_and_lands_once()
    {
        // EINTR would tell the writer nothing was written while the write may already have landed; a program that
        // writes again then writes twice (an O_APPEND log gets a line twice, or a hole where the first one went).
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fs = new MemoryFileSystem
        {
            Gate = (op, _, _) =>
            {
                if (op != "write")
                {
                    return Task.CompletedTask;
                }
                entered.TrySetResult();
                return release.Task;
            },
        };
        await using var m = TestMount.Start(fs, new FuseOptions { OperationTimeout = TimeSpan.FromMinutes(10) });
        // The writer handles SIGUSR1 (a handled signal is what makes the kernel send INTERRUPT; an ignored one is not).
        var psi = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"trap ':' USR1; printf 'one line\\n' >> '{m.P("log")}'");
        using var writer = Process.Start(psi)!;
        var stderr = writer.StandardError.ReadToEndAsync();
        await entered.Task.WaitAsync(Bound);
        Shell.Ok($"kill -USR1 {writer.Id}");
        var deadline = DateTime.UtcNow + Bound;
        while (m.Session.InterruptsIgnored == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
        Assert.Equal(1, m.Session.InterruptsIgnored);
        release.SetResult();
        await writer.WaitForExitAsync().WaitAsync(Bound);
        Assert.True(writer.ExitCode == 0, $"the writer exited {writer.ExitCode}: {await stderr}");
        Assert.Equal("one line\n", File.ReadAllText(m.P("log")));
        Assert.Equal(0, m.Session.Interrupts);
    }
}

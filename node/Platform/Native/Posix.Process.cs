using System.Runtime.InteropServices;

namespace Appliance.Platform.Native;

public static partial class Posix
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    /// <summary>Linux x86-64/arm64 numbers: stop a process (it cannot catch it) and let it continue.</summary>
    public const int SIGCONT = 18;
    public const int SIGSTOP = 19;

    /// <summary>kill(2): sends <paramref name="signal"/> to process <paramref name="pid"/>. False when there is no
    /// such process (ESRCH: it is gone); other errors (EPERM: another user's) throw.</summary>
    public static bool kill(int pid, int signal)
    {
        if (pid <= 0)
        {
            // kill(0 or -N) signals whole process groups: never what a caller with a pid file means.
            throw new ArgumentOutOfRangeException(nameof(pid), pid, "a process id is positive");
        }
        if (Libc.kill(pid, signal) == 0)
        {
            return true;
        }
        var errno = Marshal.GetLastPInvokeError();
        return errno == ESRCH ? false : throw Throw.For("kill", errno, $"process {pid}");
    }

    private const int ESRCH = 3;
}

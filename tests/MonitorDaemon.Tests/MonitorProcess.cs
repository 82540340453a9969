using System.Diagnostics;

namespace Appliance.Monitor.Daemon.Tests;

/// <summary>Monitor processes for the tests: started with their output appended to a log file, killed with SIGKILL.</summary>
internal static class MonitorProcess
{
    /// <summary>Starts <paramref name="program"/> with <paramref name="args"/>, its stdout and stderr appended to
    /// <paramref name="log"/>.</summary>
    public static Process Start(string program, IEnumerable<string> args, string log)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        var p = Process.Start(psi)!;
        var gate = new Lock();
        void Append(string? line)
        {
            if (line is not null)
            {
                lock (gate)
                {
                    File.AppendAllText(log, line + "\n");
                }
            }
        }
        p.ErrorDataReceived += (_, e) => Append(e.Data);
        p.OutputDataReceived += (_, e) => Append(e.Data);
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        return p;
    }

    /// <summary>SIGKILL: no chance to flush or say goodbye; waits until it is gone.</summary>
    public static void Kill(ref Process? process)
    {
        if (process is { } p)
        {
            p.Kill();
            p.WaitForExit();
            p.Dispose();
            process = null;
        }
    }
}

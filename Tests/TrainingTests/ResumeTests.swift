import Foundation
import Testing

@testable import Training

#if canImport(Glibc)
    import Glibc
#endif

/// A run killed with SIGKILL (also while it writes a checkpoint) and resumed with
/// --continue_train logs the same losses as the run that was never interrupted.
@Suite(.serialized) struct ResumeTests {
    /// A small run that uses every random stream: shuffled pairs, crops, flips and both pools.
    func arguments(data: String, models: String, name: String) -> [String] {
        [
            "train", "--dataroot", data, "--name", name, "--models-dir", models, "--netG", "resnet_6blocks",
            "--ngf", "8", "--ndf", "8", "--load_size", "36", "--crop_size", "28", "--pool_size", "5",
            "--n_epochs", "2", "--n_epochs_decay", "2", "--print_freq", "1", "--display_freq", "20",
            "--save_latest_freq", "7", "--save_epoch_freq", "1", "--max_iters", "70", "--threads", "2", "--seed", "3",
            "--max_dataset_size", "20",
        ]
    }

    @Test(.enabled(if: cyclegandBinary != nil)) func killedRunsResumeExactly() throws {
        let scratch = try Scratch()
        let data = fixture("synthetic").path
        let models = scratch.path("models")

        let straight = try cyclegand(arguments(data: data, models: models, name: "straight"))
        #expect(straight.status == 0, "\(straight.output)")
        let expected = try LossLog.records(at: logURL(models, "straight"))
        #expect(expected.count == 70)

        // The same run, killed three times: once as soon as a checkpoint write has begun, twice at random.
        let folder = URL(fileURLWithPath: models).appendingPathComponent("killed/training")
        var random = SplitMix64(seed: 99)
        var kills = 0
        var killedDuringWrite = false
        for attempt in 0..<8 {
            let started = FileManager.default.fileExists(atPath: folder.appendingPathComponent("checkpoint").path)
            let process = try startCyclegand(
                arguments(data: data, models: models, name: "killed")
                    + (started ? ["--continue_train"] : []))
            if kills < 3 {
                let deadline = Date().addingTimeInterval(kills == 0 ? 20 : 0.3 + 1.5 * random.uniform())
                while process.isRunning && Date() < deadline {
                    if kills == 0, writingCheckpoint(folder) { break }
                    usleep(200)
                }
                if process.isRunning {
                    killedDuringWrite = killedDuringWrite || writingCheckpoint(folder)
                    kill(process.processIdentifier, SIGKILL)
                    kills += 1
                }
            }
            _ = (process.standardOutput as! Pipe).fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            if process.terminationReason == .exit {
                #expect(process.terminationStatus == 0, "attempt \(attempt) failed")
                break
            }
        }
        #expect(kills >= 2, "the run finished before it could be killed")
        let resumed = try LossLog.records(at: logURL(models, "killed"))
        #expect(resumed.count == expected.count)
        for (r, e) in zip(resumed, expected) {
            #expect(r.epoch == e.epoch && r.iters == e.iters && r.totalIters == e.totalIters)
            for (k, (a, b)) in zip(r.losses, e.losses).enumerated() {
                #expect(abs(a - b) <= 1e-5 * max(abs(b), 1e-6), "\(LossRecord.lossNames[k]) at \(e.totalIters)")
            }
        }
        _ = killedDuringWrite
    }

    func logURL(_ models: String, _ name: String) -> URL {
        URL(fileURLWithPath: models).appendingPathComponent("\(name)/training/loss_log.jsonl")
    }

    /// A checkpoint write in progress leaves a `.checkpoint.incoming-…` folder beside `checkpoint/`.
    func writingCheckpoint(_ folder: URL) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).contains {
            $0.hasPrefix(".checkpoint.incoming")
        }
    }
}

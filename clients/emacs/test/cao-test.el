;;; cao-test.el --- ERT tests of cao.el against a real cao-sidecar  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/test_emacs.py:
;;
;;   emacs --batch -Q -L clients/emacs -l clients/emacs/test/cao-test.el \
;;         -f ert-run-tests-batch-and-exit
;;
;; in an environment of its own (HOME, XDG_* dirs).  CAO_TEST_WORKSPACE is the project root,
;; CAO_TEST_SIDECAR the Python that runs the sidecar (python -m cao_sidecar) and
;; CAO_TEST_SOCKET the tmux socket name the wrapper expects cao.el to pick for the workspace
;; (it kills that tmux server afterwards).  The agents are the sidecar's mock agent.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'cao)

(defvar cao-test--root (cao--normalize-root (or (getenv "CAO_TEST_WORKSPACE")
                                                (error "CAO_TEST_WORKSPACE is not set"))))

(setq cao-sidecar-program (list (or (getenv "CAO_TEST_SIDECAR") "python3") "-m" "cao_sidecar"))
(setq cao-answer-prompts 'ask)

(defvar cao-test--messages nil "Every message shown, newest first.")

(defun cao-test--record-message (orig format-string &rest args)
  "Record what `message' (ORIG) shows for FORMAT-STRING and ARGS."
  (let ((text (apply orig format-string args)))
    (when text (push text cao-test--messages))
    text))

(advice-add 'message :around #'cao-test--record-message)

(defun cao-test--wait (what predicate &optional timeout describe)
  "Wait until PREDICATE is non-nil; return its value.
Wait at most TIMEOUT seconds (default 20).  WHAT names the awaited thing
in the failure, with what DESCRIBE returns if given."
  (let ((deadline (+ (float-time) (or timeout 20)))
        value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (or value (ert-fail (format "timed out waiting for %s%s" what
                                (if describe (format "; got %S" (funcall describe)) ""))))))

(defun cao-test--server ()
  "The sidecar for the test workspace, started on first use."
  (let ((default-directory cao-test--root))
    (or (cao--current-server)
        (let* ((start (float-time))
               (server (cao-start cao-test--root)))
          (message "TIMING cao-start-ready %.3f" (- (float-time) start))
          server))))

(defmacro cao-test--in-workspace (&rest body)
  "Run BODY with the test workspace as `default-directory' and its sidecar started."
  (declare (indent 0))
  `(let ((default-directory cao-test--root))
     (cao-test--server)
     ,@body))

(defun cao-test--spawn (&optional profile)
  "Spawn an agent of PROFILE (default mock_developer); return its id."
  (let (result)
    (cao-spawn (or profile "mock_developer") (lambda (r) (setq result r)))
    (cao-test--wait "cao/spawn" (lambda () result) 40)
    (should (equal (plist-get result :status) "idle"))
    (plist-get result :terminalId)))

(defun cao-test--status (terminal-id)
  "TERMINAL-ID's status as cao.el knows it from notifications."
  (plist-get (cao--agent (cao-test--server) terminal-id) :status))

(defun cao-test--message-matching (regexp)
  "The newest recorded message matching REGEXP."
  (cl-find-if (lambda (m) (string-match-p regexp m)) cao-test--messages))


;;; Without a sidecar

(ert-deftest cao-test-socket-per-workspace ()
  "The default tmux socket is cao- and 12 hex digits of the root's SHA-256 (contract item 5)."
  (should (equal (cao-default-tmux-socket cao-test--root) (getenv "CAO_TEST_SOCKET")))
  (should (equal (cao-default-tmux-socket (directory-file-name cao-test--root))
                 (getenv "CAO_TEST_SOCKET")))
  (let ((contact (cao--contact cao-test--root)))
    (should (equal (last contact 3) (list "--stdio" "--tmux-socket" (getenv "CAO_TEST_SOCKET")))))
  (let ((cao-tmux-socket "mine"))
    (should (equal (last (cao--contact cao-test--root) 1) '("mine")))))

(ert-deftest cao-test-program-lookup ()
  "The sidecar program: the setting, else PATH.
The project's own .venv (once trusted): cao-trust-test.el."
  (let* ((dir (make-temp-file "cao-venv" t))
         (program (expand-file-name ".venv/bin/cao-sidecar" dir)))
    (unwind-protect
        (progn
          (make-directory (file-name-directory program) t)
          (with-temp-file program (insert "#!/bin/sh\n"))
          (set-file-modes program #o755)
          (let ((cao-sidecar-program "/opt/cao/bin/cao-sidecar"))
            (should (equal (cao-sidecar-command dir) '("/opt/cao/bin/cao-sidecar"))))
          (let ((cao-sidecar-program nil)
                (exec-path nil))
            (should-error (cao-sidecar-command cao-test--root) :type 'user-error)))
      (delete-directory dir t))))

(ert-deftest cao-test-byte-compile-clean ()
  "cao.el and cao-trust.el byte-compile without a warning."
  (let* ((dir (make-temp-file "cao-elc" t))
         (byte-compile-dest-file-function
          (lambda (source) (expand-file-name (concat (file-name-base source) ".elc") dir)))
         (byte-compile-error-on-warn t))
    (unwind-protect
        (dolist (file '("cao-trust.el" "cao.el" "cao-worktrees.el"))
          (should (eq (byte-compile-file (locate-library file)) t)))
      (delete-directory dir t))))


;;; Against the sidecar

(ert-deftest cao-test-start ()
  "cao-start connects once per project and opts out of the server's own prompts."
  (cao-test--in-workspace
    (let ((server (cao-test--server)))
      (should (cao--live-p server))
      (should (eq (cao-start) server))
      (should (equal (cao--server-socket server) (getenv "CAO_TEST_SOCKET")))
      (should (plist-get (plist-get (eglot--capabilities server) :experimental) :cao))
      (should (equal (eglot-initialization-options server) '(:askUser :json-false))))))

(ert-deftest cao-test-spawn ()
  "cao-spawn starts an agent; it is listed with its status."
  (cao-test--in-workspace
    (let ((id (cao-test--spawn)))
      (should (stringp id))
      (should (cao-test--message-matching (format "^cao: mock_developer %s is idle$" id)))
      (let ((agent (cl-find id (cao-list-agents) :key (lambda (a) (plist-get a :terminalId))
                            :test #'equal)))
        (should agent)
        (should (equal (plist-get agent :profile) "mock_developer"))
        (should (equal (cao-test--status id) "idle")))
      ;; M-x cao-spawn: the profile is read with completion over cao/listProfiles.
      (let (collection)
        (cl-letf (((symbol-function 'completing-read)
                   (lambda (_prompt coll &rest _) (setq collection coll) "mock_reviewer")))
          (call-interactively #'cao-spawn))
        (should (member "mock_developer" collection))
        (should (member "supervisor" collection))
        (cao-test--wait "the spawn of mock_reviewer"
                        (lambda () (cao-test--message-matching
                                    "^cao: mock_reviewer [0-9a-f]+ is idle$")))))))

(ert-deftest cao-test-handoff ()
  "cao-handoff shows the worker's answer."
  (cao-test--in-workspace
    (let (result)
      (cao-handoff "mock_developer" "echo hello from emacs" (lambda (r) (setq result r)))
      (cao-test--wait "cao/handoff" (lambda () result) 40)
      (should (equal (plist-get result :output) "hello from emacs"))
      (should (cao-test--message-matching "^cao: mock_developer answered: hello from emacs$"))
      (with-current-buffer (format "*cao: mock_developer %s*" (plist-get result :terminalId))
        (should (equal (string-trim (buffer-string)) "hello from emacs"))))))

(ert-deftest cao-test-assign-completion-message ()
  "cao-assign answers at once; the completion is told in the echo area and by the hook."
  (cao-test--in-workspace
    (let* ((seen nil)
           (cao-worker-completed-functions (list (lambda (params) (push params seen))))
           (id (cao-assign "mock_developer" "echo assigned and done\nsecond line")))
      (should (stringp id))
      (cao-test--wait "cao/workerCompleted"
                      (lambda () (cao-test--message-matching
                                  (format "^cao: mock_developer %s finished: " id))))
      (should (cao-test--message-matching
               (format "^cao: mock_developer %s finished: assigned and done$" id)))
      (should (equal (plist-get (car seen) :terminalId) id)))))

(ert-deftest cao-test-error-is-user-error ()
  "A request the sidecar refuses is a user-error with its message."
  (cao-test--in-workspace
    (let ((err (should-error (cao-assign "no_such_profile" "echo x") :type 'user-error)))
      (should (string-match-p "no_such_profile" (cadr err))))
    (let ((err (should-error (cao-output "00000000") :type 'user-error)))
      (should (string-match-p "00000000" (cadr err))))))

(ert-deftest cao-test-answer-prompt-in-minibuffer ()
  "An agent's question is asked in the minibuffer; the answer reaches the agent."
  (cao-test--in-workspace
    (let* ((id (cao-test--spawn))
           (asked nil))
      (cl-letf (((symbol-function 'completing-read)
                 (lambda (prompt collection &rest _)
                   (push (list prompt collection) asked)
                   "Yes")))
        (cao-send-message id "ask Delete the file?")
        (cao-test--wait "the question in the minibuffer" (lambda () asked))
        (cao-test--wait "the end of the turn"
                        (lambda () (equal (cao-test--status id) "completed"))))
      (should (= (length asked) 1))
      (should (string-match-p (format "mock_developer (%s) asks: .*Delete the file\\?" id)
                              (car (car asked))))
      (should (member "Yes" (append (cadr (car asked)) nil)))
      (let ((output (plist-get (cao-request :cao/getOutput (list :terminalId id)) :output)))
        (should (string-prefix-p "answered: " output)))
      (should (cao-test--message-matching (format "^cao: answered %s: Yes$" id)))
      ;; cao.el answers, so the sidecar must not have asked through showMessageRequest.
      (with-current-buffer (jsonrpc-events-buffer (cao-test--server))
        (should-not (string-match-p "window/showMessageRequest" (buffer-string)))))))

(ert-deftest cao-test-answer-command ()
  "With prompts only told, `cao-answer' answers; a second answer to the prompt is refused."
  (cao-test--in-workspace
    (cao-mode 1)
    (unwind-protect
        (let* ((cao-answer-prompts 'notify)
               (id (cao-test--spawn))
               prompt)
          (cao-send-message id "ask Overwrite the config?")
          (setq prompt (cao-test--wait "the prompt"
                                       (lambda () (plist-get (cao--agent (cao-test--server) id)
                                                             :prompt))))
          (should (string-match-p "Overwrite the config" (plist-get prompt :text)))
          (should (cao-test--message-matching
                   (format "^cao: mock_developer (%s) asks: .*Overwrite the config.*M-x cao-answer"
                           id)))
          (should (string-match-p "?1\\]$" (cao-mode-line-text)))
          (let ((result (cao-answer id "No" (plist-get prompt :id))))
            (should (equal (plist-get result :promptId) (plist-get prompt :id))))
          (cao-test--wait "the end of the turn"
                          (lambda () (equal (cao-test--status id) "completed")))
          (should (string-prefix-p
                   "answered: "
                   (plist-get (cao-request :cao/getOutput (list :terminalId id)) :output)))
          (should-error (cao-answer id "No" (plist-get prompt :id)) :type 'user-error))
      (cao-mode -1))))

(ert-deftest cao-test-agents-list-follows-status ()
  "The agents list is redrawn on cao/agentStatus notifications."
  (cao-test--in-workspace
    (let* ((id (cao-test--spawn))
           (buffer (cao-agents))
           (row (lambda (status)
                  (with-current-buffer buffer
                    (goto-char (point-min))
                    (re-search-forward (format "^ *%s +mock_developer +%s\\b" id status) nil t))))
           (text (lambda () (with-current-buffer buffer (buffer-substring-no-properties
                                                         (point-min) (point-max))))))
      (cao-test--wait "the new agent in the list" (lambda () (funcall row "idle")) nil text)
      (cao-send-message id "sleep 1.5 slept well")
      (cao-test--wait "processing in the list" (lambda () (funcall row "processing")) 5 text)
      (cao-test--wait "completed in the list" (lambda () (funcall row "completed")) 10 text)
      (with-current-buffer buffer
        (goto-char (point-min))
        (re-search-forward (concat "^ *" id))
        (should (equal (tabulated-list-get-id) id))
        (should (eq (lookup-key cao-agents-mode-map "o") #'cao-output))))))

(ert-deftest cao-test-list-older-than-notification ()
  "A cao/listAgents answer made before a status notification does not undo it."
  (cao-test--in-workspace
    (let* ((server (cao-test--server))
           (id (cao-test--spawn))
           (since (cao--server-seq server))
           (stale (cl-find id (plist-get (cao-request :cao/listAgents nil) :agents)
                           :key (lambda (a) (plist-get a :terminalId)) :test #'equal)))
      (should (equal (plist-get stale :status) "idle"))
      (cao-send-message id "sleep 1 later")
      (cao-test--wait "processing" (lambda () (equal (cao-test--status id) "processing")) 5)
      ;; The answer to a list asked for before that change comes in only now.
      (cao--set-agents server (vector stale) since)
      (should (equal (cao-test--status id) "processing"))
      (cao-test--wait "completed" (lambda () (equal (cao-test--status id) "completed")) 10))))

(ert-deftest cao-test-mode-line ()
  "cao-mode shows \" CAO[agents/working]\"."
  (cao-test--in-workspace
    (cao-mode 1)
    (unwind-protect
        (let* ((id (cao-test--spawn))
               (expected
                (lambda (working)
                  (format " CAO[%d/%d]"
                          (cl-count-if-not (lambda (a) (equal (plist-get a :status) "exited"))
                                           (plist-get (cao-request :cao/listAgents nil) :agents))
                          working)))
               ;; `format-mode-line' gives "" in batch: evaluate cao-mode's entry itself.
               (lighter (lambda ()
                          (let ((entry (cadr (assq 'cao-mode minor-mode-alist))))
                            (should (eq (car-safe entry) :eval))
                            (if cao-mode (eval (cadr entry) t) "")))))
          (cao-test--wait "the lighter at rest"
                          (lambda () (string-match-p (regexp-quote (funcall expected 0))
                                                     (funcall lighter))))
          (cao-send-message id "sleep 1 done")
          (cao-test--wait "the lighter while working"
                          (lambda () (string-match-p (regexp-quote (funcall expected 1))
                                                     (funcall lighter))) 5)
          (cao-test--wait "the lighter after the turn"
                          (lambda () (string-match-p (regexp-quote (funcall expected 0))
                                                     (funcall lighter))) 10))
      (cao-mode -1))))

(ert-deftest cao-test-output-attach-terminate ()
  "cao-output shows the answer, cao-attach a live terminal, cao-terminate ends the agent."
  (cao-test--in-workspace
    (let ((id (cao-test--spawn)) result)
      (cao-handoff-to-agent id "echo the output" (lambda (r) (setq result r)))
      (cao-test--wait "the handoff" (lambda () result))
      (with-current-buffer (cao-output id)
        (should (equal (string-trim (buffer-string)) "the output")))
      (with-current-buffer (cao-output id t)
        (should (string-match-p "echo the output" (buffer-string))))
      (let ((term (cao-attach id)))
        (should (process-live-p (get-buffer-process term)))
        (cao-test--wait "the agent's screen in the terminal"
                        (lambda () (with-current-buffer term
                                     (string-match-p "the output" (buffer-string)))))
        (let ((kill-buffer-query-functions nil))
          (kill-buffer term)))
      ;; What the sidecar sends when the user picks "Open terminal" in its own question.
      (let ((argv (append (plist-get (cao--agent (cao-test--server) id) :attachCommand) nil)))
        (should argv)
        (eglot-handle-notification (cao-test--server) 'cao/openTerminal
                                   :terminalId id :attachCommand (vconcat argv))
        (let ((term (cao-test--wait "the terminal of cao/openTerminal"
                                    (lambda () (get-buffer (format "*cao: attach %s*" id))))))
          (should (process-live-p (get-buffer-process term)))
          (let ((kill-buffer-query-functions nil))
            (kill-buffer term))))
      (cao-terminate id)
      (cao-test--wait "the agent gone" (lambda () (null (cao-test--status id))))
      (should-not (cl-find id (cao-list-agents) :key (lambda (a) (plist-get a :terminalId))
                           :test #'equal)))))

(ert-deftest cao-test-worktrees ()
  "A worker with its own git worktree: the finished message names its branch; its diff;
the merge into the workspace's main; another worker's work discarded."
  (require 'cao-worktrees)
  (cao-test--in-workspace
    (let* ((cao-worker-worktree t)
           (id (cao-assign "mock_developer" "edit wt.txt from emacs"))
           (branch (format "cao/mock_developer-%s" id)))
      (cao-test--wait "the worker's message"
                      (lambda () (cao-test--message-matching
                                  (format "^cao: mock_developer %s finished: wrote wt.txt; its work is on %s"
                                          (regexp-quote id) (regexp-quote branch))))
                      40)
      (let ((worktree (cl-find id (cao-worktrees-list) :key (lambda (w) (plist-get w :terminalId))
                               :test #'equal)))
        (should (equal (plist-get worktree :branch) branch))
        (should (equal (cao-worktree-summary worktree)
                       "1 commit, 1 file changed; leftovers committed by the sidecar")))
      (with-current-buffer (cao-worktree-diff id)
        (should (derived-mode-p 'diff-mode))
        (should (string-match-p "^\\+from emacs$" (buffer-string))))
      (with-current-buffer (cao-worktrees)
        (should (derived-mode-p 'cao-worktrees-mode))
        (should (string-match-p (regexp-quote branch) (buffer-string)))
        (should (eq (lookup-key cao-worktrees-mode-map "m") #'cao-worktree-merge)))
      (should (eq (plist-get (cao-worktree-merge id) :merged) t))
      (should (cao-test--message-matching (format "^cao: %s merged into main$" (regexp-quote branch))))
      (should (equal (with-temp-buffer
                       (insert-file-contents (expand-file-name "wt.txt" cao-test--root))
                       (buffer-string))
                     "from emacs\n"))
      (let* ((other (cao-assign "mock_developer" "edit wt.txt thrown away"))
             (other-branch (format "cao/mock_developer-%s" other)))
        (cao-test--wait "the other worker's message"
                        (lambda () (cao-test--message-matching (regexp-quote other-branch))) 40)
        (should (equal (plist-get (cao-worktree-discard other) :state) "discarded"))
        (should-not (cl-find other (cao-worktrees-list) :key (lambda (w) (plist-get w :terminalId))
                             :test #'equal))
        (should-error (cao-worktree-diff other) :type 'user-error)))))

(provide 'cao-test)
(ert-deftest cao-test-workflow-run-and-list ()
  "A workflow starts from Emacs, its end is told, the runs list shows its steps."
  (cao-test--in-workspace
    (let ((dir (expand-file-name ".cao/workflows" cao-test--root)))
      (make-directory dir t)
      (with-temp-file (expand-file-name "brief.yaml" dir)
        (insert "inputs: [topic]\nsteps:\n  - {profile: mock_developer, task: 'echo plan {topic}'}\n"
                "  - parallel: [{profile: mock_reviewer, task: 'echo saw {previous}'}, {profile: mock_reviewer, task: 'echo also {previous}'}]\n")))
    (let (started)
      (cao-workflow-run "brief" "topic=emacs" (lambda (run) (setq started run)))
      (cao-test--wait "cao/runWorkflow" (lambda () started) 20)
      (cao-test--wait "the run's end"
                      (lambda () (cao-test--message-matching
                                  (format "^cao: workflow brief (run %s) completed$" (plist-get started :runId))))
                      60)
      (with-current-buffer (cao-workflow-runs)
        (should (string-match-p "saw plan emacs" (buffer-string)))
        (should (string-match-p "completed" (buffer-string)))))))

;;; cao-test.el ends here
